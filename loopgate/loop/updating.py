"""``loopgate update`` as a recipe you can read top to bottom: check the data, train a candidate from the
right starting point (as a job), decide and release it (:mod:`loopgate.loop.gating`), then run the downstream
wave (:mod:`loopgate.loop.propagation`). And ``resume``, which finishes runs that were killed.

Every run is recorded before and after it runs (the ``steps`` table, :mod:`loopgate.loop.runs`), keyed by its
inputs, so a run killed at any point resumes by re-running the same command (or ``loopgate resume``) without
duplicating versions, evaluations or decisions. A run that raises anything is recorded as failed, with its error:
``resume`` never re-runs it, and one broken run cannot stop ``resume`` from finishing the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loopgate.errors import LoopgateError
from loopgate.executors import jobs
from loopgate.hashing import sha256_file, sha256_json
from loopgate.loop.data import already_released, check_data, replay_files
from loopgate.loop.faults import kill_point
from loopgate.loop.gating import release_candidate
from loopgate.loop.outcomes import FailedRun, ReleaseOutcome, ResumeOutcome
from loopgate.loop.propagation import propagate_from
from loopgate.loop.runs import PREFIX, describe, mark_failed, now
from loopgate.loop.start import model_line, parent_production, start_point, start_version
from loopgate.loop.versions import register_model
from loopgate.loop.workspace import Workspace, current_user
from loopgate.records import Provenance, Verdict
from loopgate.spec import SEED_LIMIT, Recipe
from loopgate.store import VersionInfo


def check_seed(seed: int | None) -> None:
    """Refuse a seed training cannot take before anything is recorded (numpy raises deep inside the run)."""
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise LoopgateError(f"--seed {seed} is out of range: a seed is a whole number from 0 to {SEED_LIMIT - 1} "
                            "(2**32 - 1); pick one in that range")


def run_key(*parts: Any) -> str:
    """A run's identity: a hash of its inputs."""
    return sha256_json(list(parts))[:16]


def same_recipe(v: VersionInfo, recipe: Recipe) -> bool:
    """Whether ``v`` was trained with ``recipe``: compared as validated recipes, so one recorded before a field
    was added (and so without it) still matches when the field holds its default. A version with no recorded
    recipe (registered, or re-derived by transfer) counts as the same: there is nothing to tell them apart by."""
    if v.recipe is None:
        return True
    try:
        return Recipe.model_validate(v.recipe).model_dump(mode="json") == recipe.model_dump(mode="json")
    except ValueError:  # a recipe recorded by an older Loopgate that no longer validates: not this one
        return False


def train_candidate(ws: Workspace, line: str, data: list[Path], *, recipe_name: str | None = None,
                    seed: int | None = None, actor: str | None = None, progress: bool = False,
                    run: str | None = None) -> VersionInfo:
    """Train a candidate version of ``line`` on ``data`` with its recipe; idempotent for the same inputs.
    ``run``: the update run this training belongs to (``runs abandon`` closes its step with it)."""
    actor = actor or current_user()
    spec = model_line(ws, line)
    check_seed(seed)
    recipe: Recipe = ws.eco.recipe_for(line, recipe_name)
    if seed is not None:
        recipe = recipe.model_copy(update={"seed": seed})
    check_data(data, recipe)
    data_shas = [ws.store.artifacts.put(p)[0] for p in data]

    parent_version = parent_production(ws, line, spec)
    start = start_version(ws, line)
    key = run_key("update", line, data_shas, recipe.model_dump(mode="json"), start)
    for v in ws.store.versions(line):  # resume: the version of this run may already exist
        if Provenance.of(v.provenance).run_key == key:
            ws.store.set_step(f"train:{key}", "done", {"version": v.id})
            return v

    point = start_point(ws, line, recipe.method, start)
    replay = replay_files(ws, line, recipe, exclude=data_shas)

    step = {"line": line, "run": run}
    ws.store.set_step(f"train:{key}", "started", step)
    work = ws.store.work_dir(key)  # a killed run's partial folder is dropped: training is deterministic
    try:
        result = ws.executor.run(jobs.train, parent_dir=point.parent_dir, recipe=recipe, data=list(data),
                                 out_dir=work / "out", adapter_dir=point.adapter_dir, replay=replay,
                                 progress=progress)
        prov = dict(result.provenance)
        prov.update({"run_key": key, "built_from": start, "metrics": result.metrics})
        base = point.base_version if result.kind == "adapter" else None
        v = register_model(ws, line, Path(result.out_dir), base=base,
                           actor=actor, source="update", parent_version=parent_version,
                           recipe=recipe.model_dump(mode="json"), data_sha256=data_shas, seed=recipe.seed,
                           provenance=prov)
    except Exception as e:  # a started step means "running or killed": this one is neither
        ws.store.set_step(f"train:{key}", "failed", {**step, "error": describe(e)})
        raise
    kill_point("after-register")
    ws.store.set_step(f"train:{key}", "done", {"version": v.id})
    ws.store.remove_work_dir(key)
    return v


def update(ws: Workspace, line: str, data: list[Path], *, recipe_name: str | None = None, seed: int | None = None,
           actor: str | None = None, progress: bool = False, propagate: bool = True, again: bool = False
           ) -> ReleaseOutcome:
    """``loopgate update``: train a candidate, gate it, release it if allowed, propagate downstream.

    Data the line's production history already holds is not trained twice (a CI retry after a lost runner):
    the outcome names the version that holds it, unless ``again``."""
    actor = actor or current_user()
    model_line(ws, line)
    # validate before anything is recorded: a run that fails on bad input must not look interrupted
    check_seed(seed)
    recipe = ws.eco.recipe_for(line, recipe_name)
    check_data(data, recipe)
    if seed is not None:
        recipe = recipe.model_copy(update={"seed": seed})
    # the recipe's content, not its name: editing a recipe in loopgate.yaml (or picking another) is new work
    run = run_key("run", line, [sha256_file(p) for p in data], recipe.model_dump(mode="json"), again)
    interrupted = (ws.store.step(f"run:{run}") or ("", None))[0] == "started"
    if not again and not interrupted:  # an interrupted run of this command is finished, not skipped
        held = already_released(ws, line, data)
        if held is not None and not same_recipe(held, recipe):
            held = None  # the data was trained on, with another recipe: this run is new work
        decisions = [d for d in ws.store.decisions(held.id) if d.verdict is Verdict.passed] if held else []
        if held is not None and decisions:
            return ReleaseOutcome(version=held.id, decision=decisions[-1], released=True,
                                  note=f"already released: {held.id} was built on this data; nothing trained")
    return _run_update(ws, run, line, data, recipe_name=recipe_name, seed=seed, actor=actor, progress=progress,
                       propagate=propagate, again=again)


# ``update_start`` was this module's name for :func:`~loopgate.loop.start.start_version` (kept for importers)
update_start = start_version


class RunFailed(LoopgateError):
    """An update run raised an error that is not a LoopgateError (a value training cannot take, or a bug); the
    run is recorded as failed with it, and the original error is this one's ``__cause__``."""

    def __init__(self, run: str, line: str, stage: str, error: str, released: str | None) -> None:
        self.run, self.error = run, error
        kept = (f"{released} was released before it stopped; re-running the update finishes the downstream wave"
                if released else "nothing it built was released")
        super().__init__(
            f"the update of '{line}' stopped while {stage} on an error Loopgate did not expect — {error}. Run {run} "
            f"is recorded as failed ({kept}). Check the update data and the recipe for a value training cannot "
            f"take, then run the update again; 'loopgate runs abandon {run} --reason TEXT' drops the failed run "
            "from resume's report. If the inputs are right, this is a bug: 'loopgate runs list --status failed "
            "--json' keeps its traceback for the report.")


def _run_update(ws: Workspace, run: str, line: str, data: list[Path], *, recipe_name: str | None,
                seed: int | None, actor: str, progress: bool, propagate: bool, again: bool) -> ReleaseOutcome:
    """The recorded run of one update: started → train → release → propagate → done, or failed on any error
    (recorded with the error; a LoopgateError is raised as it is, anything else as :class:`RunFailed`)."""
    args = {"command": "update", "line": line, "data": [str(p) for p in data], "recipe": recipe_name,
            "seed": seed, "actor": actor, "again": again, "propagate": propagate}
    ws.store.set_step(PREFIX + run, "started", {**args, "at": now()})
    ws.store.record("update.start", line, {"data": args["data"], "recipe": recipe_name}, actor=actor)
    stage, released = "training", None
    try:
        v = train_candidate(ws, line, data, recipe_name=recipe_name, seed=seed, actor=actor, progress=progress,
                            run=run)
        stage = "deciding and releasing " + v.id
        out = release_candidate(ws, v.id, actor=actor, progress=progress)
        # with canary on a release moves only `canary`: the downstream wave starts from production alone, when
        # production follows (the canary analysis, or `loopgate promote`), as `loopgate release` does
        on_production = ws.store.channel(line, "production") == v.id
        if out.released:
            out.released_to = "production" if on_production else "canary"
            released = v.id
        if out.released and propagate and on_production:
            stage = f"re-deriving the lines below {v.id}"
            out.propagation = propagate_from(ws, v.id, actor=actor, progress=progress)
        made = Provenance.of(v.provenance)
        out.training = {k: getattr(made, k) for k in ("method", "final_loss", "tokens_seen", "train_flops",
                                                       "wall_s", "train_s", "params", "seed", "code_version")}
        out.training["tokens_per_s"] = made.metrics.get("tokens_per_s")
    except LoopgateError as e:  # a user error: it would fail the same way on resume
        mark_failed(ws, run, args, e, actor=actor)
        raise
    except Exception as e:  # anything else fails the run too: left `started`, every resume would crash on it
        raise RunFailed(run, line, stage, mark_failed(ws, run, args, e, actor=actor), released) from e
    ws.store.set_step(PREFIX + run, "done", {**args, "version": v.id, "released": out.released, "at": now()})
    return out


def resume(ws: Workspace, *, progress: bool = False) -> ResumeOutcome:
    """Finish every run that was recorded as started but never finished (killed). Runs that failed earlier are
    reported, not re-run — they would fail the same way; a run that fails now is recorded as failed and
    reported, and the others still finish. Abandoned runs (``loopgate runs abandon``) are skipped."""
    out = ResumeOutcome()
    for key, args in ws.store.open_steps("failed"):
        if key.startswith(PREFIX) and args and args.get("command") == "update":
            out.failed.append(FailedRun(run=key.removeprefix(PREFIX), line=str(args.get("line")),
                                        data=list(args.get("data") or []), error=args.get("error", "")))
    for key, args in ws.store.open_steps():
        if not key.startswith(PREFIX) or not args or args.get("command") != "update":
            continue
        run, actor = key.removeprefix(PREFIX), args.get("actor") or current_user()
        try:
            out.finished.append(_run_update(ws, run, args["line"], [Path(p) for p in args["data"]],
                                            recipe_name=args.get("recipe"), seed=args.get("seed"), actor=actor,
                                            progress=progress, propagate=bool(args.get("propagate", True)),
                                            again=bool(args.get("again"))))
        except Exception as e:  # recorded as failed by _run_update; one broken run must not stop the others
            status, recorded = ws.store.step(key) or ("", None)
            error = (recorded or {}).get("error") if status == "failed" else None
            if error is None:  # it broke before its run was re-started (inputs recorded by an older Loopgate)
                error = mark_failed(ws, run, args, e, actor=actor)
            out.failed.append(FailedRun(run=run, line=str(args.get("line")), data=list(args.get("data") or []),
                                        error=error, resumed=True))
    return out
