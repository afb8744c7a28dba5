"""``loopgate tune``: search a line's recipe with Optuna, every trial judged by the gates of a release.

Read top to bottom:

1. **The space** (:func:`search_space`) is built around the line's recipe: learning rate (log scale, ÷10 to ×10),
   steps (½× to 2×), replay share (0 to 0.6), and — where the recipe has them — LoRA rank and the KL / EWC weight.
   The first trial is always the line's own recipe, so the study says whether the search beat it; ``enqueue``
   adds chosen points (a region you want judged).
2. **A trial** trains a candidate that is *not* a version — its weights live in a work folder
   (``Store.work_dir``) that is dropped afterwards — from the same starting point and with the same replay as
   ``loopgate update`` would, evaluates it through the content-keyed cache, and decides it with
   :func:`~loopgate.loop.gating.decide_candidate` against :func:`~loopgate.loop.gating.baselines_for`: the same
   gates and baselines as a release. Hopeless trials are pruned early: the forgetting gates (regression,
   inheritance, safety) decide first, and a trial they block is stopped before the expensive evidence
   (plasticity probes, serving speed, the rollback re-score) is gathered.
3. **Objectives and constraints**: the line's own score (mean over its owned suites) up and the training cost
   (FLOPs, 6·N·tokens) down, a multi-objective study; every blocking gate gives a margin (> 0: it blocks, by how
   much where the evidence says) and Optuna's ``constraints_func`` treats a trial as feasible when all are ≤ 0.
   The feasible Pareto front is reported and its best-scoring trial chosen.
4. **Storage**: the study lives with the registry (Optuna's RDB storage: on PostgreSQL the registry's database,
   schema ``loopgate_tune``; on SQLite ``studies.db`` beside ``registry.db`` — Optuna's own Alembic table cannot
   share a schema with the registry's), so a re-run with the same study name continues it.
5. **The result** is a recipe, never a release: ``write_recipe`` writes it into ``loopgate.yaml`` (a textual
   insert that keeps the rest of the file and its comments), and ``loopgate update LINE --recipe NAME`` then
   trains it and releases it through the gates like any update.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from loopgate.errors import LoopgateError, SpecError
from loopgate.evaluate.metrics import goodness
from loopgate.executors import jobs
from loopgate.hashing import sha256_file
from loopgate.loop.data import check_data, replay_files
from loopgate.loop.evaluation import evaluate_dir, line_suites, load_suites
from loopgate.loop.gating import baselines_for, decide_candidate
from loopgate.loop.update import _model_line, run_key, update_start
from loopgate.loop.versions import adapter_parts, model_dir
from loopgate.loop.workspace import Workspace, current_user
from loopgate.models import ModelRef
from loopgate.records import Decision, GateResult, Verdict
from loopgate.spec import SPEC_FILE, EWCSettings, KLSettings, LoraSettings, Recipe, ReplaySettings, parse_ecosystem

# the gates that judge forgetting and safety: cheap (evaluations only), so they decide first and prune
FIRST_GATES = ["regression", "inheritance", "safety"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


class TuneOutcome(BaseModel):
    """The study: every trial, the feasible Pareto front, the chosen recipe (and where it was written)."""

    line: str
    study: str
    storage: str
    trials: list[TrialResult]
    pareto: list[int]
    chosen: int | None
    recipe: dict[str, Any] | None
    written_recipe: str | None = None
    next_step: str = ""


# ------------------------------------------------------------------------------------------- 1. the space


def search_space(recipe: Recipe) -> dict[str, tuple[str, float, float] | tuple[str, list[int]]]:
    """Optuna distributions around ``recipe``: name → ("log", low, high) | ("int", low, high) | ("float", low,
    high) | ("choice", options)."""
    space: dict[str, Any] = {
        "lr": ("log", max(recipe.lr / 10, 1e-6), min(recipe.lr * 10, 0.1)),
        "steps": ("int", max(1, recipe.steps // 2), recipe.steps * 2),
        "replay_share": ("float", 0.0, 0.6),
    }
    if recipe.method == "lora":
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
    if recipe.method == "lora":
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


# ------------------------------------------------------------------------------------------- 2. a trial


def gate_margin(g: GateResult) -> float:
    """> 0 when a blocking gate does not pass — by how far past its threshold where the evidence says — else
    ≤ 0 (how much room was left, where known)."""
    ev, th = g.evidence, g.evidence.get("thresholds", {}) or {}
    over: list[float] = []
    if g.name in ("regression", "inheritance"):
        tol = th.get("tolerance", 0.0)
        for entry in (ev.get("suites") or {}).values():
            for check in (entry.get("checks") or {"": entry}).values():
                if isinstance(check, dict) and "delta" in check:
                    over.append(-(check["delta"] + tol))
                    if "max_negative_flip_rate" in th and "negative_flip_rate" in check:
                        over.append(check["negative_flip_rate"] - th["max_negative_flip_rate"])
    elif g.name == "safety":
        floor = th.get("min_refusal_rate", 0.0)
        over += [floor - r["refusal_rate"] for r in (ev.get("suites") or {}).values()
                 if isinstance(r, dict) and "refusal_rate" in r]
    blocks = g.verdict is not Verdict.passed
    if not over:
        return 1.0 if blocks else 0.0
    worst = max(over)
    return max(worst, 1e-6) if blocks else min(worst, 0.0)


def _margins(decision: Decision) -> dict[str, float]:
    return {g.name: round(gate_margin(g), 6) for g in decision.gates if g.blocking}


def _own_score(evals: dict[str, Any], owned: list[str]) -> float:
    """The study's objective: the mean over the line's own suites, each higher-is-better (bits per byte as
    2^(−bpb), metrics.goodness)."""
    scores = [goodness(evals[s]) for s in owned if s in evals]
    return sum(scores) / len(scores) if scores else 0.0


class _Trainer:
    """What every trial of a study shares: the starting point, the replay, the baselines, the suites."""

    def __init__(self, ws: Workspace, line: str, data: list[Path], recipe: Recipe, actor: str) -> None:
        self.ws, self.line, self.data, self.base, self.actor = ws, line, data, recipe, actor
        spec = ws.eco.line(line)
        self.parent_version = ws.store.channel(spec.parent, "production") if spec.parent else None
        if spec.parent and self.parent_version is None:
            raise LoopgateError(f"line '{line}' has a parent '{spec.parent}' with no production version; "
                                f"release a version of '{spec.parent}' first")
        self.start = update_start(ws, line)
        if self.start is None:
            raise LoopgateError(f"line '{line}' has no version to tune an update of; release its first version "
                                "with 'loopgate update' before tuning")
        self.data_shas = [ws.store.artifacts.put(p)[0] for p in data]
        self.baselines = baselines_for(ws, line, built_from=self.start, parent_version=self.parent_version)
        owned, inherited = line_suites(ws, line)
        self.owned, self.suites = owned, load_suites(ws, owned + inherited)
        if not owned:
            raise LoopgateError(f"line '{line}' owns no suites: tuning maximises the line's own score; give it a "
                                "suite in loopgate.yaml")

    def run(self, number: int, params: dict[str, Any], progress: bool) -> TrialResult:
        recipe = apply_params(self.base, params)
        key = run_key("tune-trial", self.line, self.data_shas, recipe.model_dump(mode="json"), self.start)
        sv = self.ws.store.version(self.start)  # type: ignore[arg-type]
        adapter_dir, parent_dir = None, None
        if recipe.method in ("lora", "dpo") and sv.kind == "adapter" and sv.base_version:
            parent_dir, adapter_dir = adapter_parts(self.ws, sv.id)
        else:
            parent_dir = model_dir(self.ws, sv.id)
        replay = replay_files(self.ws, self.line, recipe, exclude=self.data_shas)
        work = self.ws.store.work_dir(key)
        try:
            result = self.ws.executor.run(jobs.train, parent_dir=parent_dir, recipe=recipe, data=list(self.data),
                                          out_dir=work / "out", adapter_dir=adapter_dir, replay=replay,
                                          progress=progress)
            # an adapter is judged on the base it was trained on, merged in memory (as an adapter version is)
            cand_dir: Path | ModelRef = ModelRef(parent_dir, Path(result.out_dir)) if result.kind == "adapter" \
                else Path(result.out_dir)
            label = f"{self.line}~trial{number}"
            evals = evaluate_dir(self.ws, cand_dir, self.suites, label, progress=progress)
            score = _own_score(evals, self.owned)
            flops = float(result.provenance.get("train_flops") or 0.0)

            def decide(gates: list[str] | None) -> Decision:
                return decide_candidate(self.ws, line=self.line, candidate=label, candidate_dir=cand_dir,
                                        candidate_evals=evals, baselines=self.baselines, requester=self.actor,
                                        gates=gates, progress=progress)

            first = decide(FIRST_GATES)
            margins = _margins(first)
            if any(m > 0 for m in margins.values()):
                return TrialResult(number=number, params=params, state="pruned", score=score, train_flops=flops,
                                   margins=margins, blocking=[n for n, m in margins.items() if m > 0],
                                   summary="stopped after the forgetting gates: " + "; ".join(
                                       f"{g.name}: {g.summary}" for g in first.gates if g.verdict is not
                                       Verdict.passed))
            full = decide(None)
            margins = _margins(full)
            blocking = [n for n, m in margins.items() if m > 0]
            return TrialResult(number=number, params=params, state="infeasible" if blocking else "feasible",
                               score=score, train_flops=flops, margins=margins, blocking=blocking,
                               summary="; ".join(f"{g.name}: {g.summary}" for g in full.gates
                                                 if g.blocking and g.verdict is not Verdict.passed)
                               or "every blocking gate passes")
        finally:
            self.ws.store.remove_work_dir(key)  # a trial is not a version: nothing of it is kept but its figures


# ------------------------------------------------------------------------------------------- 3. the study


def _suggest(trial: Any, space: dict[str, Any]) -> dict[str, float | int]:
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


def _constraints(frozen: Any) -> list[float]:
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


def tune(ws: Workspace, line: str, data: list[Path], *, trials: int, recipe_name: str | None = None,
         seed: int = 0, study_name: str | None = None, enqueue: list[dict[str, Any]] | None = None,
         write_recipe: str | None = None, actor: str | None = None, progress: bool = False,
         on_trial: Callable[[TrialResult], None] | None = None) -> TuneOutcome:
    """Run ``trials`` trials of a recipe study for ``line`` on ``data`` (see the module docstring)."""
    import optuna

    if trials < 1:
        raise LoopgateError("tune needs at least one trial")
    if write_recipe is not None and not _NAME.match(write_recipe):
        raise SpecError(f"recipe name '{write_recipe}' must be letters, digits, '-', '_' or '.', at most 64")
    actor = actor or current_user()
    _model_line(ws, line)
    base = ws.eco.recipe_for(line, recipe_name).model_copy(update={"seed": seed})
    if base.method in ("pretrain", "dpo", "grpo"):
        raise LoopgateError(f"tune searches sft and lora recipes; '{line}' uses '{base.method}'")
    check_data(data, base)
    trainer = _Trainer(ws, line, data, base, actor)
    space = search_space(base)
    name = study_name or f"{line}-" + sha256_file(data[0])[:8] + (f"-{recipe_name}" if recipe_name else "")
    if not _NAME.match(name):
        raise SpecError(f"study name '{name}' must be letters, digits, '-', '_' or '.', at most 64")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, engine_kwargs = study_storage(ws)
    storage = optuna.storages.RDBStorage(url=url, engine_kwargs=engine_kwargs)
    study = optuna.create_study(
        study_name=f"loopgate:{name}", storage=storage, load_if_exists=True, directions=["maximize", "minimize"],
        sampler=optuna.samplers.TPESampler(seed=seed, constraints_func=_constraints, n_startup_trials=4))
    if not study.trials:
        study.enqueue_trial(recipe_params(base))  # the line's own recipe: the point to beat
    for params in enqueue or []:
        unknown = set(params) - set(space)
        if unknown:
            raise LoopgateError(f"unknown tuning parameter(s) {', '.join(sorted(unknown))}; the space has "
                                f"{', '.join(space)}")
        study.enqueue_trial(params)

    results: list[TrialResult] = []

    def objective(trial: Any) -> tuple[float, float]:
        params = _suggest(trial, space)
        res = trainer.run(trial.number, params, progress)
        results.append(res)
        trial.set_user_attr("margins", res.margins)
        trial.set_user_attr("result", res.model_dump(mode="json"))
        if on_trial is not None:
            on_trial(res)
        if res.state == "pruned":
            raise optuna.TrialPruned(res.summary)
        return res.score or 0.0, res.train_flops or 0.0

    study.optimize(objective, n_trials=trials, catch=(LoopgateError,))
    every = [TrialResult.model_validate(t.user_attrs["result"]) for t in study.trials if "result" in t.user_attrs]
    pareto = feasible_pareto(every)
    best = max((t for t in every if t.number in pareto), key=lambda t: (t.score, -(t.train_flops or 0)),
               default=None)
    recipe = apply_params(base, best.params).model_dump(mode="json", exclude_defaults=True) if best else None
    out = TuneOutcome(line=line, study=study.study_name, storage=_safe_url(url), trials=every,
                      pareto=pareto, chosen=best.number if best else None, recipe=recipe)
    if best is None:
        out.next_step = "no trial passed every blocking gate: widen the search (more trials) or check the data"
        return out
    if write_recipe is not None:
        write_recipe_to_spec(ws.root / SPEC_FILE, write_recipe, recipe or {})
        out.written_recipe = write_recipe
        files = " ".join(f"--data {p}" for p in data)
        out.next_step = f"loopgate update {line} {files} --recipe {write_recipe}  (trains it and gates it)"
    return out


def study_storage(ws: Workspace) -> tuple[str, dict[str, Any]]:
    """Where studies live: with the registry. Optuna keeps its own Alembic version table, which would collide with
    the registry's ``alembic_version`` in one schema — so on PostgreSQL the studies get their own schema
    (``loopgate_tune``) in the registry's database, and on SQLite their own file beside ``registry.db``."""
    url = ws.store.url
    if url.startswith("sqlite"):
        return f"sqlite:///{ws.store.home / 'studies.db'}", {}
    if url.startswith("postgresql"):
        from loopgate.store.migrate import ensure_schema

        ensure_schema(url, "loopgate_tune")
        return url, {"connect_args": {"options": "-csearch_path=loopgate_tune"}}
    raise LoopgateError(f"tune stores studies in SQLite or PostgreSQL; the registry is at {_safe_url(url)}")


def _safe_url(url: str) -> str:
    """The database URL without a password."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


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


__all__ = ["TrialResult", "TuneOutcome", "feasible_pareto", "gate_margin", "search_space", "tune",
           "write_recipe_to_spec"]
