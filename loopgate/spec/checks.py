"""From a parsed YAML document to a validated :class:`Ecosystem`: pydantic errors rewritten as YAML paths, then
the checks that span sections (parents, tiers, cycles, names that must refer to declared things)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from loopgate.errors import SpecError
from loopgate.names import check_line_name
from loopgate.spec.common import SPEC_FILE, Tier, _article, _did_you_mean
from loopgate.spec.ecosystem import Ecosystem
from loopgate.spec.lines import LineSpec
from loopgate.spec.policy import Policy

_UNION_TAGS = {"str", "int", "float", "bool", "none", "Recipe", "[key]"}


def _format_validation_error(err: ValidationError, prefix: str = "") -> str:
    errors = err.errors()
    # a union field (``recipe: name | {inline}``) reports one error per member; when the inline member
    # names a precise problem, the "should be a valid string" of the other member is noise
    precise = {tuple(p for p in e["loc"] if p not in _UNION_TAGS) for e in errors if not e["type"].endswith("_type")}
    parts = []
    for e in errors:
        loc = tuple(p for p in e["loc"] if p not in _UNION_TAGS and not str(p).startswith("function-after"))
        if len(loc) < len(e["loc"]) and e["type"].endswith("_type") and any(q[:len(loc)] == loc for q in precise):
            continue
        path = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (remove it or check its spelling)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        parts.append(f"{path}: {msg}")
    return "; ".join(dict.fromkeys(parts))


def parse_ecosystem(data: Any, root: Path | str = ".", source: str = SPEC_FILE) -> Ecosystem:
    """Validate a parsed YAML document into an :class:`Ecosystem`, raising ``SpecError`` with YAML paths."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping with at least 'lines:', got {type(data).__name__}")
    try:
        eco = Ecosystem.model_validate(data)
    except ValidationError as err:
        raise SpecError(f"{source}: {_format_validation_error(err)}") from None
    eco.root = Path(root)
    _check_structure(eco, source)
    return eco


def _check_structure(eco: Ecosystem, source: str) -> None:
    """Every problem that spans sections, all named at once (``SpecError``)."""
    problems = _name_problems(eco)
    for name, line in eco.lines.items():
        problems += _line_problems(eco, name, line)
    problems += _cycle_problems(eco)
    problems += _grader_line_problems(eco)
    problems += _policy_problems(eco)
    if problems:
        # a cycle is reported once per member; keep the first mention
        unique = list(dict.fromkeys(problems))
        raise SpecError(f"{source}: " + "; ".join(unique))


def _name_problems(eco: Ecosystem) -> list[str]:
    problems: list[str] = []
    for what, names in (("line", eco.lines), ("suite", eco.suites)):
        for n in names:
            try:
                check_line_name(n, what)
            except SpecError as err:
                problems.append(f"{what}s: {err}")
    return problems


def _line_problems(eco: Ecosystem, name: str, line: LineSpec) -> list[str]:
    """One line's parent, tier, app and serving sections, and the suites and recipe it names."""
    where = f"lines.{name}"
    if line.parent is not None and line.parent not in eco.lines:
        return [f"{where}.parent: unknown line '{line.parent}'{_did_you_mean(line.parent, eco.lines)}"]
    problems: list[str] = []
    if line.tier is Tier.foundation and line.parent is not None:
        problems.append(f"{where}.parent: a foundation line has no parent; remove 'parent' or change the tier")
    if line.tier is not Tier.foundation and line.parent is None:
        problems.append(f"{where}.parent: {_article(line.tier.value)} line needs a parent line")
    if line.parent is not None:
        ptier = eco.lines[line.parent].tier
        if ptier.rank >= line.tier.rank:
            problems.append(
                f"{where}.parent: tier inversion — {_article(line.tier.value)} line cannot have the "
                f"{ptier.value} line '{line.parent}' as parent (parents sit in a higher tier: "
                "foundation → industrial → application → app)"
            )
        if ptier is Tier.app:
            problems.append(f"{where}.parent: '{line.parent}' is an app; apps have no children")
    if line.tier is Tier.app and line.app is None:
        problems.append(f"{where}.app: an app line needs an 'app:' section (prompt_template, channel)")
    if line.tier is not Tier.app and line.app is not None:
        problems.append(f"{where}.app: only lines of tier 'app' take an 'app:' section")
    if line.tier is Tier.app and line.serving is not None:
        problems.append(f"{where}.serving: an app is served by its model line; put 'serving:' on "
                        f"'{line.parent}'")
    for i, s in enumerate(line.suites):
        if s not in eco.suites:
            problems.append(f"{where}.suites[{i}]: unknown suite '{s}'{_did_you_mean(s, eco.suites)}")
    if isinstance(line.recipe, str) and line.recipe not in eco.recipes:
        problems.append(
            f"{where}.recipe: unknown recipe '{line.recipe}'{_did_you_mean(line.recipe, eco.recipes)}"
        )
    return problems


def _cycle_problems(eco: Ecosystem) -> list[str]:
    # cycles: walk parents with a visited set (tiers already forbid most, but a same-tier loop is caught above
    # only once per edge; this names the whole cycle)
    problems: list[str] = []
    reported: set[frozenset[str]] = set()
    for name in eco.lines:
        seen = [name]
        cur = eco.lines[name].parent
        while cur is not None and cur in eco.lines:
            if cur in seen:
                members = seen[seen.index(cur):]
                if frozenset(members) not in reported:  # report a cycle once, not once per member
                    reported.add(frozenset(members))
                    cycle = " → ".join(members + [cur])
                    problems.append(f"lines.{cur}.parent: cycle {cycle}; a line cannot descend from itself")
                break
            seen.append(cur)
            cur = eco.lines[cur].parent
    return problems


def _policy_problems(eco: Ecosystem) -> list[str]:
    """Policy sections that name unknown lines or suites, or do not validate as a :class:`Policy`."""
    problems: list[str] = []
    for tier_or_line in eco.policy.lines:
        if tier_or_line not in eco.lines:
            problems.append(
                f"policy.lines.{tier_or_line}: unknown line{_did_you_mean(tier_or_line, eco.lines)}"
            )
    for section_name, section in [("policy.defaults", eco.policy.defaults)] + [
        (f"policy.tiers.{t.value}", s) for t, s in eco.policy.tiers.items()
    ] + [(f"policy.lines.{n}", s) for n, s in eco.policy.lines.items()]:
        try:
            Policy.model_validate(section)
        except ValidationError as err:
            problems.append(_format_validation_error(err, prefix=section_name))
            continue
        smoke = (section.get("rollback") or {}).get("smoke_suite")
        if smoke is not None and smoke not in eco.suites:
            problems.append(f"{section_name}.rollback.smoke_suite: unknown suite '{smoke}'"
                            f"{_did_you_mean(smoke, eco.suites)}; name a suite declared under 'suites:'")
    return problems


def _grader_line_problems(eco: Ecosystem) -> list[str]:
    """A judge or classifier that names a line must name a declared line that has weights (not an app)."""
    problems = []
    for name, suite in eco.suites.items():
        for key, grader in (("judge", suite.judge), ("classifier", suite.classifier)):
            line = getattr(grader, "line", None)
            if line is None:
                continue
            where = f"suites.{name}.{key}.line"
            if line not in eco.lines:
                problems.append(f"{where}: unknown line '{line}'{_did_you_mean(line, eco.lines)}; declare the "
                                "model line under 'lines:'")
            elif eco.lines[line].tier is Tier.app:
                problems.append(f"{where}: '{line}' is an app, which has no weights; name its model line")
    return problems
