"""The ecosystem: the whole versioned tree declared in one YAML file, and the queries the loop asks of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from loopgate.errors import SpecError
from loopgate.spec.common import SPEC_FILE, Tier, _article, _deep_merge, _did_you_mean, _Strict
from loopgate.spec.lines import ExecutorSpec, LineSpec
from loopgate.spec.policy import Policy, PolicySpec
from loopgate.spec.recipes import Recipe
from loopgate.spec.suites import SuiteSpec


class Ecosystem(_Strict):
    """The whole versioned tree, declared in one YAML file."""

    name: str = "ecosystem"
    suites: dict[str, SuiteSpec] = {}
    recipes: dict[str, Recipe] = {}
    lines: dict[str, LineSpec]
    policy: PolicySpec = PolicySpec()
    executor: ExecutorSpec = ExecutorSpec()
    # the folder that relative paths are resolved against (not part of the YAML)
    root: Path = Field(default=Path("."), exclude=True)

    # ----------------------------------------------------------------- queries

    def line(self, name: str) -> LineSpec:
        if name not in self.lines:
            raise SpecError(f"unknown line '{name}'{_did_you_mean(name, self.lines)}; lines: {', '.join(self.lines)}")
        return self.lines[name]

    def ancestors(self, name: str) -> list[str]:
        """Parent first, foundation last."""
        out: list[str] = []
        cur = self.line(name).parent
        while cur is not None:
            out.append(cur)
            cur = self.lines[cur].parent
        return out

    def children(self, name: str) -> list[str]:
        return [n for n, spec in self.lines.items() if spec.parent == name]

    def descendants(self, name: str) -> list[str]:
        """Every line below ``name``, in tier order (parents before children)."""
        kids: dict[str, list[str]] = {}  # one pass over the lines, not one per line: linear in their number
        for n, spec in self.lines.items():
            if spec.parent is not None:
                kids.setdefault(spec.parent, []).append(n)
        out: list[str] = []
        frontier = kids.get(name, [])
        while frontier:
            out.extend(frontier)
            frontier = [c for f in frontier for c in kids.get(f, [])]
        at = {n: i for i, n in enumerate(out)}
        return sorted(out, key=lambda n: (self.lines[n].tier.rank, at[n]))

    def owned_suites(self, name: str) -> list[str]:
        return list(self.line(name).suites)

    def inherited_suites(self, name: str) -> list[str]:
        """Suites owned by the line's ancestors (nearest first, no duplicates)."""
        seen: list[str] = []
        for anc in self.ancestors(name):
            for s in self.lines[anc].suites:
                if s not in seen and s not in self.line(name).suites:
                    seen.append(s)
        return seen

    def recipe_for(self, name: str, override: str | None = None) -> Recipe:
        """The line's recipe, or the named recipe ``override``."""
        if override is not None:
            if override not in self.recipes:
                raise SpecError(
                    f"unknown recipe '{override}'{_did_you_mean(override, self.recipes)}; "
                    f"declare it under 'recipes:' in {SPEC_FILE}"
                )
            return self.recipes[override]
        r = self.line(name).recipe
        if r is None:
            raise SpecError(f"lines.{name}.recipe: the line has no recipe; add one to {SPEC_FILE} or pass --recipe")
        return self.recipes[r] if isinstance(r, str) else r

    def policy_for(self, name: str) -> Policy:
        """Effective policy of a line: defaults, then its tier's section, then its own overrides."""
        merged: dict[str, Any] = {}
        for section in (
            self.policy.defaults,
            self.policy.tiers.get(self.line(name).tier, {}),
            self.policy.lines.get(name, {}),
        ):
            merged = _deep_merge(merged, section)
        policy = Policy.model_validate(merged)
        if policy.safety.require_suite is None:
            # the built-in default: an application line (what apps put in front of users) must reach a safety
            # suite once the ecosystem has declared what safe means; elsewhere a team opts in per tier or line
            declared = any(s.kind == "safety" for s in self.suites.values())
            required = declared and self.line(name).tier is Tier.application
            policy.safety.require_suite = required
            if not required:
                tier = self.line(name).tier.value
                policy.safety.reason = (f"by default only application lines need one; this is {_article(tier)} "
                                        "line" if declared else "the ecosystem declares no safety suite")
        return policy

    def suite_path(self, suite: str) -> Path:
        p = Path(self.suites[suite].path)
        return p if p.is_absolute() else self.root / p

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def check_suite_files(self, suites: list[str] | None = None) -> None:
        """Refuse (``SpecError``) the suites among ``suites`` (all declared ones when None) whose ``path`` or
        ``train_path`` is not a file, naming each path as resolved against the spec's folder."""
        missing = [f"suites.{name}.{key}: {self.resolve(path)} does not exist"
                   for name in (self.suites if suites is None else suites)
                   for key, path in (("path", self.suites[name].path), ("train_path", self.suites[name].train_path),
                                     ("judge.calibration", getattr(self.suites[name].judge, "calibration", None)))
                   if path is not None and not self.resolve(path).is_file()]
        if missing:
            raise SpecError(f"{SPEC_FILE}: " + "; ".join(missing) + " (relative paths resolve against the folder "
                            f"that holds {SPEC_FILE}); create the file or fix the path")


def plan_strategies(has_adapter: bool, shapes_match: bool | None) -> list[str]:
    """The strategies ``transfer`` would try, cheapest first (``shapes_match=None``: not known yet, assume yes).

    Here, beside the strategy names, so planning a wave needs no model library."""
    plan = []
    if has_adapter and shapes_match is not False:
        plan.append("reattach")
    if shapes_match is not False:
        plan += ["diff_vector", "diff_vector_finetune"]
    return plan + ["rerun", "distill"]
