"""The search space of ``loopgate tune`` and what a study leaves: the points it tries, the feasible Pareto front
of its trials, and the chosen recipe written into ``loopgate.yaml``. (:mod:`loopgate.loop.tune` runs the trials.)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from loopgate.errors import SpecError
from loopgate.spec import SPEC_FILE, EWCSettings, KLSettings, LoraSettings, Recipe, ReplaySettings, parse_ecosystem
from loopgate.train.methods import method_facts


class TrialResult(BaseModel):
    """One trial: the recipe it tried, what the gates said, and its objectives."""

    number: int
    params: dict[str, float | int]
    state: str  # feasible | infeasible | pruned | failed
    score: float | None = None
    train_flops: float | None = None
    margins: dict[str, float] = {}  # per blocking gate: > 0 blocks (by how much), ≤ 0 passes
    blocking: list[str] = []  # the blocking gates that did not pass
    summary: str = ""



# ------------------------------------------------------------------------------------------- 1. the space


def search_space(recipe: Recipe, *, rank_fixed: bool = False
                 ) -> dict[str, tuple[str, float, float] | tuple[str, list[int]]]:
    """Optuna distributions around ``recipe``: name → ("log", low, high) | ("int", low, high) | ("float", low,
    high) | ("choice", options). ``rank_fixed``: the study continues an adapter, whose rank is its own."""
    space: dict[str, Any] = {
        "lr": ("log", max(recipe.lr / 10, 1e-6), min(recipe.lr * 10, 0.1)),
        "steps": ("int", max(1, recipe.steps // 2), recipe.steps * 2),
        "replay_share": ("float", 0.0, 0.6),
    }
    if method_facts(recipe.method).makes_adapter and not rank_fixed:  # an adapter's rank is a point of the space
        space["lora_r"] = ("choice", [4, 8, 16, 32])
    if recipe.kl is not None:
        space["kl_weight"] = ("log", max(recipe.kl.weight / 10, 1e-4), max(recipe.kl.weight * 10, 1e-3))
    if recipe.ewc is not None:
        space["ewc_weight"] = ("log", max(recipe.ewc.weight / 10, 1e-4), max(recipe.ewc.weight * 10, 1e-3))
    return space


def recipe_params(recipe: Recipe) -> dict[str, float | int]:
    """The point of the space where ``recipe`` sits (the study's first trial)."""
    params: dict[str, float | int] = {"lr": recipe.lr, "steps": recipe.steps,
                                      "replay_share": recipe.replay.share if recipe.replay else 0.0}
    if method_facts(recipe.method).makes_adapter:  # an adapter's rank is a point of the space
        params["lora_r"] = (recipe.lora or LoraSettings()).r
    if recipe.kl is not None:
        params["kl_weight"] = recipe.kl.weight
    if recipe.ewc is not None:
        params["ewc_weight"] = recipe.ewc.weight
    return params


def apply_params(recipe: Recipe, params: dict[str, Any]) -> Recipe:
    """``recipe`` with a trial's parameters."""
    update: dict[str, Any] = {}
    if "lr" in params:
        update["lr"] = float(params["lr"])
    if "steps" in params:
        update["steps"] = int(params["steps"])
    if "replay_share" in params:
        share = float(params["replay_share"])
        base = recipe.replay or ReplaySettings()
        # no replay at all is a point of the space too: share 0 and nothing required
        update["replay"] = base.model_copy(update={"share": share, "required": base.required and share > 0})
    if "lora_r" in params:
        r = int(params["lora_r"])
        update["lora"] = (recipe.lora or LoraSettings()).model_copy(update={"r": r, "alpha": 2 * r})
    if "kl_weight" in params:
        update["kl"] = (recipe.kl or KLSettings()).model_copy(update={"weight": float(params["kl_weight"])})
    if "ewc_weight" in params:
        update["ewc"] = (recipe.ewc or EWCSettings()).model_copy(update={"weight": float(params["ewc_weight"])})
    return Recipe.model_validate({**recipe.model_dump(), **{k: v.model_dump() if isinstance(v, BaseModel) else v
                                                            for k, v in update.items()}})



# ------------------------------------------------------------------------------------------- the study


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, float | int]:
    params: dict[str, float | int] = {}
    for name, dist in space.items():
        if dist[0] == "log":
            params[name] = trial.suggest_float(name, dist[1], dist[2], log=True)
        elif dist[0] == "int":
            params[name] = trial.suggest_int(name, dist[1], dist[2])
        elif dist[0] == "float":
            params[name] = trial.suggest_float(name, dist[1], dist[2])
        else:
            params[name] = trial.suggest_categorical(name, dist[1])
    return params


def constraints(frozen: Any) -> list[float]:
    margins = frozen.user_attrs.get("margins") or {}
    return [float(v) for v in margins.values()] or [1.0]


def feasible_pareto(trials: list[TrialResult]) -> list[int]:
    """The feasible trials no other feasible trial beats on both score (higher) and cost (lower)."""
    ok = [t for t in trials if t.state == "feasible" and t.score is not None and t.train_flops is not None]

    def dominated(t: TrialResult) -> bool:
        return any(o.score >= t.score and o.train_flops <= t.train_flops  # type: ignore[operator]
                   and (o.score > t.score or o.train_flops < t.train_flops)  # type: ignore[operator]
                   for o in ok if o is not t)
    return sorted(t.number for t in ok if not dominated(t))


# ------------------------------------------------------------------------------------------- 5. the result


def write_recipe_to_spec(path: Path, name: str, recipe: dict[str, Any]) -> None:
    """Set ``recipes.<name>`` in ``loopgate.yaml`` by a textual edit: every other line (comments included) is kept.

    The recipe is written as one flow-style mapping (JSON is YAML); an existing entry of that name, and only its
    lines, is replaced. The new text is validated as a whole before it replaces the file (atomically)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    entry_json = json.dumps(recipe, separators=(", ", ": "))
    top = next((i for i, ln in enumerate(lines) if re.match(r"^recipes:\s*(#.*)?$", ln)), None)
    if top is None:
        if re.search(r"^recipes:", text, flags=re.M):
            raise SpecError(f"{SPEC_FILE}: 'recipes:' is written inline; put each recipe on its own line to let tune "
                            "add one")
        lines += ([] if text.endswith("\n") or not text else ["\n"]) + [f"recipes:\n  {name}: {entry_json}\n"]
    else:
        block_end = next((i for i in range(top + 1, len(lines))
                          if lines[i].strip() and not lines[i].startswith((" ", "\t", "#"))), len(lines))
        children = [i for i in range(top + 1, block_end)
                    if re.match(r"^(\s+)[^\s#]", lines[i]) and not lines[i].lstrip().startswith("-")]
        indent = min((len(lines[i]) - len(lines[i].lstrip()) for i in children), default=2)
        own = [i for i in children if len(lines[i]) - len(lines[i].lstrip()) == indent]
        existing = next((i for i in own if re.match(rf"^\s*['\"]?{re.escape(name)}['\"]?\s*:", lines[i])), None)
        new_line = f"{' ' * indent}{name}: {entry_json}\n"
        if existing is None:
            lines.insert(top + 1, new_line)
        else:
            later = [i for i in own if i > existing]
            end = later[0] if later else block_end
            while end > existing + 1 and not lines[end - 1].strip():
                end -= 1
            lines[existing:end] = [new_line]
    new_text = "".join(lines)
    import yaml

    try:
        parsed = yaml.safe_load(new_text)
    except yaml.YAMLError as err:
        raise SpecError(f"{SPEC_FILE}: writing recipe '{name}' would break the file ({err}); add it by hand") \
            from None
    parse_ecosystem(parsed, root=path.parent, source=SPEC_FILE)
    if parsed["recipes"][name] != recipe:
        raise SpecError(f"{SPEC_FILE}: recipe '{name}' did not read back as written; add it by hand")
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    os.replace(tmp, path)


__all__ = ["TrialResult", "apply_params", "constraints", "feasible_pareto", "recipe_params", "search_space",
           "suggest", "write_recipe_to_spec"]
