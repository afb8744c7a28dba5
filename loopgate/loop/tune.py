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

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from loopgate.errors import LoopgateError, SpecError
from loopgate.evaluate.metrics import goodness
from loopgate.executors import jobs
from loopgate.gates.margin import gate_margin
from loopgate.hashing import sha256_file
from loopgate.loop.data import check_data, replay_files
from loopgate.loop.evaluation import evaluate_dir, line_suites, load_suites, submit_adapter_evaluations
from loopgate.loop.gating import baselines_for, decide_candidate
from loopgate.loop.start import model_line, parent_production, start_point, start_version
from loopgate.loop.study import (
    TrialResult,
    apply_params,
    constraints,
    feasible_pareto,
    recipe_params,
    search_space,
    suggest,
    write_recipe_to_spec,
)
from loopgate.loop.updating import run_key
from loopgate.loop.workspace import Workspace, current_user
from loopgate.models import ModelRef
from loopgate.records import Decision, Provenance, Verdict
from loopgate.spec import SPEC_FILE, Recipe
from loopgate.train.methods import method_facts

# the gates that judge forgetting and safety: cheap (evaluations only), so they decide first and prune
FIRST_GATES = ["regression", "inheritance", "safety"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


# ------------------------------------------------------------------------------------------- 2. a trial


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
        self.parent_version = parent_production(ws, line, ws.eco.line(line))
        self.start = start_version(ws, line)
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
        # the same start as ``loopgate update``: an adapter start is continued or merged in memory, never refused
        point = start_point(self.ws, self.line, recipe.method, self.start)
        parent_dir = point.parent_dir
        assert parent_dir is not None  # a tuned line has a start version (checked when the study opened)
        replay = replay_files(self.ws, self.line, recipe, exclude=self.data_shas)
        work = self.ws.store.work_dir(key)
        try:
            result = self.ws.executor.run(jobs.train, parent_dir=parent_dir, recipe=recipe, data=list(self.data),
                                          out_dir=work / "out", adapter_dir=point.adapter_dir, replay=replay,
                                          progress=progress)
            # an adapter is judged on the base it was trained on: evaluated on that base with the adapter never
            # merged (the gateway's shared-base path); the gates' weight measurements read it merged in memory
            adapter = result.kind == "adapter"
            cand_dir: Path | ModelRef = ModelRef(parent_dir, Path(result.out_dir)) if adapter else Path(result.out_dir)
            label = f"{self.line}~trial{number}"
            evals = submit_adapter_evaluations(self.ws, parent_dir, [(label, Path(result.out_dir), self.suites)]
                                               )[label].result() if adapter else \
                evaluate_dir(self.ws, cand_dir, self.suites, label, progress=progress)
            score = _own_score(evals, self.owned)
            flops = Provenance.of(result.provenance).train_flops or 0.0

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
    model_line(ws, line)
    base = ws.eco.recipe_for(line, recipe_name).model_copy(update={"seed": seed})
    if not method_facts(base.method).tunable:
        raise LoopgateError(f"tune searches sft and lora recipes; '{line}' uses '{base.method}'")
    check_data(data, base)
    trainer = _Trainer(ws, line, data, base, actor)
    # a study that continues an adapter (a lora line whose production is one) keeps the adapter's rank
    space = search_space(base, rank_fixed=start_point(ws, line, base.method, trainer.start).adapter_dir is not None)
    name = study_name or f"{line}-" + sha256_file(data[0])[:8] + (f"-{recipe_name}" if recipe_name else "")
    if not _NAME.match(name):
        raise SpecError(f"study name '{name}' must be letters, digits, '-', '_' or '.', at most 64")
    study, url = _open_study(ws, name, base, space, seed, enqueue or [])

    def objective(trial: Any) -> tuple[float, float]:
        res = trainer.run(trial.number, suggest(trial, space), progress)
        trial.set_user_attr("margins", res.margins)
        trial.set_user_attr("result", res.model_dump(mode="json"))
        if on_trial is not None:
            on_trial(res)
        if res.state == "pruned":
            raise optuna.TrialPruned(res.summary)
        return res.score or 0.0, res.train_flops or 0.0

    study.optimize(objective, n_trials=trials, catch=(LoopgateError,))
    every = [TrialResult.model_validate(t.user_attrs["result"]) for t in study.trials if "result" in t.user_attrs]
    return _outcome(ws, line, data, base, every, study.study_name, url, write_recipe)


def _open_study(ws: Workspace, name: str, base: Recipe, space: dict[str, Any], seed: int,
                enqueue: list[dict[str, Any]]) -> tuple[Any, str]:
    """The study ``name`` in the registry's storage (created, or loaded to continue), its first points enqueued."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, engine_kwargs = study_storage(ws)
    storage = optuna.storages.RDBStorage(url=url, engine_kwargs=engine_kwargs)
    study = optuna.create_study(
        study_name=f"loopgate:{name}", storage=storage, load_if_exists=True, directions=["maximize", "minimize"],
        sampler=optuna.samplers.TPESampler(seed=seed, constraints_func=constraints, n_startup_trials=4))
    if not study.trials:
        # the line's own recipe: the point to beat
        study.enqueue_trial({k: v for k, v in recipe_params(base).items() if k in space})
    for params in enqueue:
        unknown = set(params) - set(space)
        if unknown:
            raise LoopgateError(f"unknown tuning parameter(s) {', '.join(sorted(unknown))}; the space has "
                                f"{', '.join(space)}")
        study.enqueue_trial(params)
    return study, url


def _outcome(ws: Workspace, line: str, data: list[Path], base: Recipe, every: list[TrialResult], study: str,
             url: str, write_recipe: str | None) -> TuneOutcome:
    """The feasible Pareto front of ``every`` trial, its best-scoring trial chosen (and written, if asked)."""
    pareto = feasible_pareto(every)
    best = max((t for t in every if t.number in pareto), key=lambda t: (t.score, -(t.train_flops or 0)),
               default=None)
    recipe = apply_params(base, best.params).model_dump(mode="json", exclude_defaults=True) if best else None
    out = TuneOutcome(line=line, study=study, storage=_safe_url(url), trials=every,
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


__all__ = ["TrialResult", "TuneOutcome", "feasible_pareto", "gate_margin", "search_space", "tune",
           "write_recipe_to_spec"]
