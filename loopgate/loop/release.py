"""The closed loop: update → evaluate → gates → decision → release → propagate, plus rollback.

Each step is recorded in the registry before and after it runs (``steps`` table), keyed by the run's
inputs, so a run killed at any point resumes by re-running the same command (or ``loopgate resume``)
without duplicating versions, evaluations or decisions.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from loopgate.errors import ArtifactError, DataError, LoopgateError, NotFoundError
from loopgate.gates.context import ApprovalRecord, GateContext, RollbackCheck
from loopgate.gates.policy import decide
from loopgate.hashing import sha256_file, sha256_json
from loopgate.loop.evaluation import evaluate_dir, evaluate_version, line_suites, load_suites, profile_version
from loopgate.loop.versions import adapter_parts, model_dir, register_model
from loopgate.loop.workspace import Workspace
from loopgate.records import Decision, Evaluation, ServingCost, Verdict
from loopgate.spec import CostPolicy, Recipe, Tier
from loopgate.store import VersionInfo


def checkpoint(name: str) -> None:
    """Fault injection for crash tests: ``LOOPGATE_KILL_AT=name`` kills the process here (SIGKILL, no cleanup),
    exactly as an OOM-killer or a lost machine would."""
    if os.environ.get("LOOPGATE_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def current_user() -> str:
    return os.environ.get("LOOPGATE_USER") or getpass.getuser()


class PropagationOutcome(BaseModel):
    line: str
    from_parent: str | None = None
    to_parent: str
    strategy: str | None = None
    attempts: list[dict[str, Any]] = []
    version: str | None = None
    verdict: str | None = None
    released: bool = False
    pinned: bool = False
    note: str = ""


class ReleaseOutcome(BaseModel):
    version: str
    decision: Decision
    released: bool
    # for an update: final loss, tokens/s, tokens seen, training FLOPs and wall time of the training run
    training: dict[str, Any] = {}
    channel_moves: list[dict[str, Any]] = []
    propagation: list[PropagationOutcome] = []
    note: str = ""


class FailedRun(BaseModel):
    """A run that stopped on a user error: resume reports it and does not re-run it."""

    line: str
    data: list[str]
    error: str


class ResumeOutcome(BaseModel):
    finished: list[ReleaseOutcome] = []
    failed: list[FailedRun] = []


# ------------------------------------------------------------------------------------------- update


def run_key(*parts: Any) -> str:
    return sha256_json(list(parts))[:16]


def _data_paths(ws: Workspace, shas: list[str]) -> list[Path]:
    return [ws.store.artifacts.verify(sha, "update data") for sha in shas]


def _history_data(ws: Workspace, line: str) -> list[str]:
    """Data the line's production version was actually built on: its own update data and that of the versions
    it was built from (never a rejected candidate's data — that would replay what the gates refused)."""
    shas: list[str] = []
    vid = ws.store.channel(line, "production")
    seen: set[str] = set()
    while vid and vid not in seen and vid.startswith(f"{line}@"):
        seen.add(vid)
        v = ws.store.version(vid)
        for sha in v.data_sha256:
            if sha not in shas and ws.store.artifacts.has(sha):
                shas.append(sha)
        built_from = v.provenance.get("built_from") or v.provenance.get("transferred_from", {}).get("old_child")
        vid = built_from if isinstance(built_from, str) else None
    return shas


def production_history(ws: Workspace, line: str) -> list[VersionInfo]:
    """The line's production version and the versions it was built from, newest first."""
    chain: list[VersionInfo] = []
    vid = ws.store.channel(line, "production")
    while vid and vid.startswith(f"{line}@") and vid not in {v.id for v in chain}:
        v = ws.store.version(vid)
        chain.append(v)
        built_from = v.provenance.get("built_from") or v.provenance.get("transferred_from", {}).get("old_child")
        vid = built_from if isinstance(built_from, str) else None
    return chain


def replay_files(ws: Workspace, line: str, recipe: Recipe, *, exclude: list[str] = ()) -> list[Path]:  # type: ignore[assignment]
    """The files a run of ``recipe`` on ``line`` rehearses — the one place this is decided, for updates and
    re-derivations alike. ``history``: the released update data of the line and every ancestor (what it
    inherited); ``suites``: the ``train_path`` of its owned and inherited suites. Data with a sha256 in
    ``exclude`` (the run's own data) is left out. A recipe that asks for replay and finds nothing stops with
    an error naming what was searched, unless ``replay.required`` is false."""
    if recipe.replay is None:
        return []
    searched: list[str] = []
    shas: list[str] = []
    files: list[Path] = []
    if "history" in recipe.replay.sources:
        for name in [line, *ws.eco.ancestors(line)]:
            searched.append(f"the released update data of '{name}'")
            shas += [s for s in _history_data(ws, name) if s not in exclude and s not in shas]
        files += _data_paths(ws, shas)
    if "suites" in recipe.replay.sources:
        names = ws.eco.owned_suites(line) + ws.eco.inherited_suites(line)
        searched.append("the train_path of suites " + (", ".join(names) if names else "(the line has none)"))
        for sname in names:
            tp = ws.eco.suites[sname].train_path
            if tp:
                files.append(ws.eco.resolve(tp))
    if not files and recipe.replay.required:
        raise LoopgateError(
            f"the recipe of '{line}' asks for replay (sources: {', '.join(recipe.replay.sources)}) but found no "
            f"rows; searched {'; '.join(searched)}. A registered foundation has no update data in Loopgate: "
            "give its suites a train_path and add 'suites' to replay.sources, or set replay.required: false "
            "to train without replay")
    return files


def update_start(ws: Workspace, line: str) -> str | None:
    """Where an update of ``line`` starts: its production version, else its latest *registered* version,
    else the parent's production — never a candidate the gates rejected."""
    prod = ws.store.channel(line, "production")
    if prod is not None:
        return prod
    registered = [v for v in ws.store.versions(line) if v.source == "register"]
    if registered:
        return registered[-1].id
    parent = ws.eco.line(line).parent
    return ws.store.channel(parent, "production") if parent else None


def train_candidate(ws: Workspace, line: str, data: list[Path], *, recipe_name: str | None = None,
                    seed: int | None = None, actor: str | None = None, progress: bool = False) -> VersionInfo:
    """Train a candidate version of ``line`` on ``data`` with its recipe; idempotent for the same inputs."""
    from loopgate.train import run_update

    actor = actor or current_user()
    spec = ws.eco.line(line)
    if spec.tier is Tier.app:
        raise LoopgateError(f"'{line}' is an app: update its model line '{spec.parent}' instead")
    recipe: Recipe = ws.eco.recipe_for(line, recipe_name)
    if seed is not None:
        recipe = recipe.model_copy(update={"seed": seed})
    check_data(data, recipe)
    data_shas = [ws.store.artifacts.put(p)[0] for p in data]

    parent_version = ws.store.channel(spec.parent, "production") if spec.parent else None
    if spec.parent and parent_version is None:
        raise LoopgateError(f"line '{line}' has a parent '{spec.parent}' with no production version; "
                            f"release a version of '{spec.parent}' first")
    start = update_start(ws, line)
    key = run_key("update", line, data_shas, recipe.model_dump(mode="json"), start)
    for v in ws.store.versions(line):  # resume: the version of this run may already exist
        if v.provenance.get("run_key") == key:
            ws.store.set_step(f"train:{key}", "done", {"version": v.id})
            return v

    adapter_dir: Path | None = None
    base_version: str | None = None
    parent_dir: Path | None = None
    if start is not None:
        sv = ws.store.version(start)
        if recipe.method in ("lora", "dpo") and sv.kind == "adapter" and sv.base_version:
            # keep adapters rooted on the parent line's version so a foundation upgrade can re-attach them
            parent_dir, adapter_dir = adapter_parts(ws, start)
            base_version = sv.base_version
        else:
            parent_dir = model_dir(ws, start)
            base_version = start  # used only if the update produces an adapter (lora, or dpo with lora)
    replay = replay_files(ws, line, recipe, exclude=data_shas)
    work = ws.store.home / "work" / key
    if work.exists():
        shutil.rmtree(work)  # a killed run left a partial folder: training is deterministic, so start over
    ws.store.set_step(f"train:{key}", "started", {"line": line})
    result = run_update(parent_dir, recipe, [Path(p) for p in data], work / "out", adapter_dir=adapter_dir,
                        replay=replay, retention=replay, progress=progress)
    prov = dict(result.provenance)
    prov.update({"run_key": key, "built_from": start, "metrics": result.metrics})
    v = register_model(ws, line, Path(result.out_dir), base=base_version if result.kind == "adapter" else None,
                       actor=actor, source="update", parent_version=parent_version,
                       recipe=recipe.model_dump(mode="json"), data_sha256=data_shas, seed=recipe.seed,
                       provenance=prov)
    checkpoint("after-register")
    ws.store.set_step(f"train:{key}", "done", {"version": v.id})
    shutil.rmtree(work, ignore_errors=True)
    return v


def check_data(data: list[Path], recipe: Recipe) -> None:
    """Every update data file exists and parses for the recipe's method (a DataError names file, line, field)."""
    from loopgate.train.data import load_rows, row_kind_for

    for p in data:
        if Path(p).is_dir():
            raise DataError(f"--data {p} is a folder; pass the JSONL file(s) in it, one --data each")
        if not Path(p).is_file():
            raise NotFoundError(f"--data {p}: no such file")
        load_rows(Path(p), row_kind_for(recipe.method))


def already_released(ws: Workspace, line: str, data: list[Path]) -> VersionInfo | None:
    """The version in the line's production history that was built on exactly these data files, if any."""
    shas = {sha256_file(p) for p in data}
    for v in production_history(ws, line):
        if shas and shas <= set(v.data_sha256):
            return v
    return None


def update(ws: Workspace, line: str, data: list[Path], *, recipe_name: str | None = None, seed: int | None = None,
           actor: str | None = None, progress: bool = False, propagate: bool = True, again: bool = False
           ) -> ReleaseOutcome:
    """``loopgate update``: train a candidate, gate it, release it if allowed, propagate downstream.

    Data the line's production history already holds is not trained twice (a CI retry after a lost runner):
    the outcome names the version that holds it, unless ``again``."""
    actor = actor or current_user()
    spec = ws.eco.line(line)
    if spec.tier is Tier.app:
        raise LoopgateError(f"'{line}' is an app: update its model line '{spec.parent}' instead")
    # validate before anything is recorded: a run that fails on bad input must not look interrupted
    check_data(data, ws.eco.recipe_for(line, recipe_name))
    run = run_key("run", line, [sha256_file(p) for p in data], recipe_name, seed, again)
    interrupted = (ws.store.step(f"run:{run}") or ("", None))[0] == "started"
    if not again and not interrupted:  # an interrupted run of this command is finished, not skipped
        held = already_released(ws, line, data)
        decisions = [d for d in ws.store.decisions(held.id) if d.verdict is Verdict.passed] if held else []
        if held is not None and decisions:
            return ReleaseOutcome(version=held.id, decision=decisions[-1], released=True,
                                  note=f"already released: {held.id} was built on this data; nothing trained "
                                       "(--again trains on it once more)")
    return _run_update(ws, run, line, data, recipe_name=recipe_name, seed=seed, actor=actor, progress=progress,
                       propagate=propagate, again=again)


def _run_update(ws: Workspace, run: str, line: str, data: list[Path], *, recipe_name: str | None,
                seed: int | None, actor: str, progress: bool, propagate: bool, again: bool) -> ReleaseOutcome:
    """The recorded run of one update: started → train → release → done (or failed, on a user error)."""
    ws.store.set_step(f"run:{run}", "started", {"command": "update", "line": line, "data": [str(p) for p in data],
                                                "recipe": recipe_name, "seed": seed, "actor": actor, "again": again,
                                                "propagate": propagate})
    ws.store.record("update.start", line, {"data": [str(p) for p in data], "recipe": recipe_name}, actor=actor)
    try:
        v = train_candidate(ws, line, data, recipe_name=recipe_name, seed=seed, actor=actor, progress=progress)
        out = release_candidate(ws, v.id, actor=actor, progress=progress, propagate=propagate)
    except LoopgateError as e:
        # a user error (bad recipe, missing replay rows, a corrupted artifact) will fail the same way on resume
        ws.store.set_step(f"run:{run}", "failed", {"command": "update", "line": line,
                                                   "data": [str(p) for p in data], "error": str(e)})
        raise
    out.training = {k: v.provenance.get(k) for k in ("method", "final_loss", "tokens_seen", "train_flops", "wall_s",
                                                     "train_s", "params", "seed", "code_version")}
    out.training["tokens_per_s"] = (v.provenance.get("metrics") or {}).get("tokens_per_s")
    ws.store.set_step(f"run:{run}", "done", {"version": v.id, "released": out.released})
    return out


# ------------------------------------------------------------------------------------------- gates


def baselines_for(ws: Workspace, version_id: str) -> dict[str, str | None]:
    """The candidate's baselines: the line's production version, its previous version, the parent's production."""
    v = ws.store.version(version_id)
    spec = ws.eco.line(v.line)
    prod = ws.store.channel(v.line, "production")
    built_from = v.provenance.get("built_from")
    previous = built_from if isinstance(built_from, str) and built_from.startswith(f"{v.line}@") else None
    if previous is None:
        earlier = [x for x in ws.store.versions(v.line) if x.number < v.number]
        previous = earlier[-1].id if earlier else None
    parent = v.parent_version or (ws.store.channel(spec.parent, "production") if spec.parent else None)
    return {"production": prod if prod != version_id else None,
            "previous": previous if previous != version_id else None, "parent": parent}


def rollback_check(ws: Workspace, target: str | None, smoke: str | None) -> RollbackCheck:
    """Facts for the rollback-readiness gate: the version a release would replace exists, verifies, loads,
    and — re-scored on the smoke suite from its reloaded weights, bypassing every cache — still scores what
    was recorded for it when it was evaluated for its own release."""
    if target is None:
        return RollbackCheck(target=None)
    try:
        ws.store.version(target)
    except NotFoundError as e:
        return RollbackCheck(target=target, exists=False, error=str(e))
    problems = ws.store.verify_version(target)
    if problems:
        return RollbackCheck(target=target, exists=True, hashes_ok=False, error=problems[0])
    suites = load_suites(ws, [smoke]) if smoke else []
    recorded = ws.store.evaluation(target, suites[0].sha256) if suites else None
    try:
        from loopgate.evaluate.runner import evaluate_model

        path = model_dir(ws, target)
        if not suites:
            from loopgate.models import load_model

            load_model(path)
            return RollbackCheck(target=target, exists=True, hashes_ok=True, loads=True)
        fresh = evaluate_model(path, suites, version=target, cache_dir=None)[0]  # no cache: really reloaded
    except Exception as e:  # any failure to load or serve means we cannot serve it again
        return RollbackCheck(target=target, exists=True, hashes_ok=True, loads=False, error=str(e))
    return RollbackCheck(target=target, exists=True, hashes_ok=True, loads=True, smoke_suite=smoke,
                         smoke_score=fresh.score, recorded_smoke_score=recorded.score if recorded else None)


def gate_context(ws: Workspace, version_id: str, *, requester: str, progress: bool = False,
                 baselines: dict[str, str | None] | None = None, with_profiles: bool = True) -> GateContext:
    """Gather everything the gates judge (evaluations, profiles, rollback facts, approvals) — the I/O half."""
    v = ws.store.version(version_id)
    owned, inherited = line_suites(ws, v.line)
    suites = owned + inherited
    safety = [s for s in suites if ws.eco.suites[s].kind == "safety"]
    baselines = baselines if baselines is not None else baselines_for(ws, version_id)
    cand = evaluate_version(ws, version_id, suites, progress=progress)
    base_evals: dict[str, dict[str, Evaluation]] = {}
    for role, bid in baselines.items():
        if bid is None:
            continue
        names = inherited if role == "parent" else suites
        base_evals[role] = evaluate_version(ws, bid, names, progress=progress) if names else {}
    policy = ws.eco.policy_for(v.line)
    cand_profile: dict[str, float] = {}
    base_profiles: dict[str, dict[str, float]] = {}
    if with_profiles:
        steps = policy.plasticity.probe_steps
        cand_profile = profile_version(ws, version_id, steps)
        ref = _foundation_reference(ws, v.line)
        if ref is not None:
            base_profiles["foundation"] = profile_version(ws, ref, steps)
        for role in ("production", "previous"):
            bid = baselines.get(role)
            if bid:
                try:
                    base_profiles[role] = profile_version(ws, bid, steps)
                except ArtifactError:
                    pass  # a baseline whose weights are gone: the rollback gate reports it, plasticity skips it
    smoke = policy.rollback.smoke_suite or (suites[0] if suites else None)
    rb = rollback_check(ws, baselines.get("production"), smoke)
    approvals = [ApprovalRecord(approver=a.approver, reason=a.reason, overrides=a.overrides)
                 for a in ws.store.approvals(version_id)]
    ctx = GateContext(
        line=v.line, tier=ws.eco.line(v.line).tier.value, candidate=version_id, requester=requester,
        owned_suites=owned, inherited_suites=inherited, safety_suites=safety, candidate_evals=cand,
        baselines=baselines, baseline_evals=base_evals, candidate_profile=cand_profile,
        baseline_profiles=base_profiles, rollback=rb, approvals=approvals,
        price_per_hour=policy.release.price_per_hour,
    )
    return ctx.model_copy(update={"serving": serving_measurements(ws, ctx, policy.cost)})


def serving_measurements(ws: Workspace, ctx: GateContext, policy: CostPolicy) -> dict[str, ServingCost]:
    """The line's traffic served by the candidate and the version it replaces, back to back in this process
    (only when a latency, throughput or money budget asks for it)."""
    wanted = (policy.max_latency_p95_ms, policy.max_latency_p95_ratio, policy.min_tokens_per_s,
              policy.max_cost_per_1k_requests, policy.max_cost_per_1k_ratio)
    traffic = ctx.traffic_suites()
    if all(w is None for w in wanted) or not traffic:
        return {}
    from loopgate.evaluate.serving import serving_cost

    replaced = ctx.replaced_baseline()
    base_dir = model_dir(ws, replaced[1]) if replaced else None
    absolute = (policy.max_latency_p95_ms, policy.min_tokens_per_s, policy.max_cost_per_1k_requests)
    if base_dir is None and all(w is None for w in absolute):
        return {}  # only ratio budgets, and nothing to be relative to (a first release)
    measured = serving_cost(model_dir(ws, ctx.candidate), base_dir, load_suites(ws, traffic))
    return {m.suite: m for m in measured}


def _foundation_reference(ws: Workspace, line: str) -> str | None:
    chain = [line] + ws.eco.ancestors(line)
    foundation = chain[-1]
    first = ws.store.versions(foundation)
    return first[0].id if first else None


# ------------------------------------------------------------------------------------------- release


def release_candidate(ws: Workspace, version_id: str, *, actor: str | None = None, progress: bool = False,
                      propagate: bool = True) -> ReleaseOutcome:
    """Gate a version and release it if the decision passes; then propagate to its child lines."""
    actor = actor or current_user()
    v = ws.store.version(version_id)
    if ws.store.channel(v.line, "production") == version_id:
        decisions = ws.store.decisions(version_id)
        if decisions:  # already released (a re-run after a kill): only finish the propagation
            props = propagate_from(ws, version_id, actor=actor, progress=progress) if propagate else []
            return ReleaseOutcome(version=version_id, decision=decisions[-1], released=True, propagation=props)
    requester = _requester(ws, version_id, actor)
    policy = ws.eco.policy_for(v.line)
    inputs = _decision_inputs(ws, version_id, policy.sha256())
    prior = [d for d in ws.store.decisions(version_id) if d.inputs_sha256 == inputs]
    if prior:
        decision = prior[-1]  # same inputs, same decision: a resumed run does not decide twice
    else:
        ctx = gate_context(ws, version_id, requester=requester, progress=progress)
        decision = decide(ctx, policy).model_copy(update={"inputs_sha256": inputs})
        decision = ws.store.add_decision(decision, actor=actor)
        checkpoint("after-decision")
    out = ReleaseOutcome(version=version_id, decision=decision, released=False)
    if decision.verdict is Verdict.passed and policy.release.auto_release:
        out.channel_moves = _release_moves(ws, version_id, decision, actor)
        out.released = True
        if propagate:
            out.propagation = propagate_from(ws, version_id, actor=actor, progress=progress)
    return out


def _decision_inputs(ws: Workspace, version_id: str, policy_sha: str) -> str:
    v = ws.store.version(version_id)
    owned, inherited = line_suites(ws, v.line)
    return sha256_json({"version": version_id, "baselines": baselines_for(ws, version_id), "policy": policy_sha,
                        "suites": [s.sha256 for s in load_suites(ws, owned + inherited)],
                        "approvals": [[a.approver, a.reason, a.overrides] for a in ws.store.approvals(version_id)]})


def _requester(ws: Workspace, version_id: str, actor: str) -> str:
    prior = ws.store.decisions(version_id)
    return prior[0].requester if prior else actor


def _release_moves(ws: Workspace, version_id: str, decision: Decision, actor: str) -> list[dict[str, Any]]:
    v = ws.store.version(version_id)
    policy = ws.eco.policy_for(v.line)
    moves = []
    if policy.release.canary:
        moves += ws.store.move_channels([(v.line, "canary", version_id)], kind="release",
                                        reason=f"decision {decision.id}: pass", actor=actor,
                                        decision_id=decision.id)
    moves += ws.store.move_channels([(v.line, "production", version_id)], kind="release",
                                    reason=f"decision {decision.id}: pass", actor=actor, decision_id=decision.id)
    return [m.model_dump(mode="json") for m in moves]


def release(ws: Workspace, version_id: str, *, actor: str | None = None, progress: bool = False) -> ReleaseOutcome:
    """``loopgate release``: gate an externally registered version and release it if the gates allow."""
    return release_candidate(ws, version_id, actor=actor, progress=progress)


def approve(ws: Workspace, version_id: str, approver: str, reason: str, overrides: list[str] | None = None,
            progress: bool = False) -> ReleaseOutcome:
    """Record an approval, then re-decide (evaluations are cached) and release if it now passes."""
    if not reason.strip():
        raise LoopgateError("--reason is required: say why you approve (it is kept in the ledger)")
    decisions = ws.store.decisions(version_id)
    requester = decisions[-1].requester if decisions else None
    if requester is not None and approver == requester:
        raise LoopgateError(f"{approver} requested the release of {version_id} and cannot approve it "
                            "(two-person rule); ask another approver")
    ws.store.add_approval(version_id, approver, reason, overrides)
    return release_candidate(ws, version_id, actor=approver, progress=progress)


def promote(ws: Workspace, version_id: str, channel: str, *, actor: str | None = None, progress: bool = False
            ) -> dict[str, Any]:
    """Move a channel to a version that holds a passing decision (channels move only through decisions);
    promoting to production starts the downstream wave, as a release does."""
    actor = actor or current_user()
    v = ws.store.version(version_id)
    decisions = [d for d in ws.store.decisions(version_id) if d.verdict is Verdict.passed]
    if not decisions:
        raise LoopgateError(f"{version_id} has no passing decision; gate it first with 'loopgate release "
                            f"{version_id}' (or approve it if the decision is inconclusive)")
    moves = ws.store.move_channels([(v.line, channel, version_id)], kind="promote",
                                   reason=f"decision {decisions[-1].id}: pass", actor=actor,
                                   decision_id=decisions[-1].id)
    props = propagate_from(ws, version_id, actor=actor, progress=progress) if channel == "production" else []
    return {"moves": [m.model_dump(mode="json") for m in moves],
            "propagation": [p.model_dump(mode="json") for p in props]}


# ------------------------------------------------------------------------------------------- propagation


def plan(ws: Workspace, version_id: str) -> list[dict[str, Any]]:
    """The downstream wave of a version: every descendant line in tier order and the strategies to try."""
    from loopgate.train.transfer import plan_strategies

    v = ws.store.version(version_id)
    wave: list[dict[str, Any]] = []
    for d in ws.eco.descendants(v.line):
        spec = ws.eco.lines[d]
        if spec.tier is Tier.app:
            assert spec.app is not None
            wave.append({"line": d, "tier": spec.tier.value, "parent": spec.parent,
                         "action": f"follows {spec.parent}/{spec.app.channel}", "strategies": []})
            continue
        prod = ws.store.channel(d, "production")
        if prod is None:
            wave.append({"line": d, "tier": spec.tier.value, "parent": spec.parent, "current": None,
                         "action": "no production version: nothing to re-derive", "strategies": []})
            continue
        pv = ws.store.version(prod)
        wave.append({"line": d, "tier": spec.tier.value, "parent": spec.parent, "current": prod,
                     "built_on": pv.parent_version, "action": "re-derive by capability transfer, then gate",
                     "strategies": _strategies(ws, d, plan_strategies(has_adapter=pv.kind == "adapter",
                                                                      shapes_match=None))})
    return wave


def _strategies(ws: Workspace, line: str, applicable: list[str]) -> list[str]:
    """The line's declared transfer strategies (in its order), or every applicable one."""
    allowed = ws.eco.lines[line].transfer
    return applicable if allowed is None else list(allowed)


def propagate_from(ws: Workspace, parent_version: str, *, actor: str, progress: bool = False
                   ) -> list[PropagationOutcome]:
    """Re-derive each child line on the newly released ``parent_version``; children release in tier order.

    A child whose candidates all fail stays on its old parent version (pinned) and its own children are
    not touched. Apps follow their model line's channel, so they need nothing here.
    """
    from loopgate.train.transfer import TransferCandidate, transfer

    pv = ws.store.version(parent_version)
    outcomes: list[PropagationOutcome] = []
    for child in ws.eco.children(pv.line):
        spec = ws.eco.lines[child]
        if spec.tier is Tier.app:
            continue
        prod = ws.store.channel(child, "production")
        if prod is None:
            outcomes.append(PropagationOutcome(line=child, to_parent=parent_version,
                                               note="no production version yet; nothing to re-derive"))
            continue
        cv = ws.store.version(prod)
        if cv.parent_version == parent_version:
            outcomes.append(PropagationOutcome(line=child, from_parent=parent_version, to_parent=parent_version,
                                               version=prod, released=True, note="already on this parent"))
            continue
        old_parent = cv.parent_version
        if old_parent is None:
            outcomes.append(PropagationOutcome(line=child, to_parent=parent_version, pinned=True,
                                               note=f"{prod} records no parent version; cannot transfer"))
            continue
        key = run_key("propagate", child, prod, parent_version)
        existing = [v for v in ws.store.versions(child) if v.provenance.get("run_key") == key]
        owned, inherited = line_suites(ws, child)
        suites = load_suites(ws, owned + inherited)
        prod_evals = evaluate_version(ws, prod, owned + inherited, progress=progress)
        parent_evals = evaluate_version(ws, parent_version, inherited, progress=progress) if inherited else {}

        def accept(cand: TransferCandidate, *, _child: str = child, _prod: str = prod,
                   _prod_evals: dict[str, Evaluation] = prod_evals,
                   _parent_evals: dict[str, Evaluation] = parent_evals,
                   _suites: list[Any] = suites) -> tuple[bool, str]:
            from loopgate.gates.inheritance import inheritance
            from loopgate.gates.regression import regression
            from loopgate.gates.safety import safety

            evs = evaluate_dir(ws, Path(cand.model_dir), _suites, label=f"{_child}<-{cand.strategy}",
                               progress=progress)
            o, i = line_suites(ws, _child)
            ctx = GateContext(line=_child, tier=ws.eco.lines[_child].tier.value, candidate=f"{_child}:candidate",
                              requester=actor, owned_suites=o, inherited_suites=i,
                              safety_suites=[n for n in o + i if ws.eco.suites[n].kind == "safety"],
                              candidate_evals=evs, baselines={"production": _prod, "previous": _prod,
                                                              "parent": parent_version},
                              baseline_evals={"production": _prod_evals, "previous": _prod_evals,
                                              "parent": _parent_evals})
            pol = ws.eco.policy_for(_child)
            results = [inheritance(ctx, pol.inheritance), regression(ctx, pol.regression), safety(ctx, pol.safety)]
            # acceptance means the gates pass outright: an inconclusive candidate would block the release anyway
            bad = [r for r in results if r.blocking and r.verdict is not Verdict.passed]
            if bad:
                return False, "; ".join(f"{r.name}: {r.verdict.value} — {r.summary}" for r in bad)
            return True, "; ".join(f"{r.name}: {r.verdict.value}" for r in results)

        if existing:
            new_v = existing[-1]
            attempts = list(new_v.provenance.get("attempts", []))
            strategy = new_v.provenance.get("strategy")
        else:
            recipe = ws.eco.recipe_for(child) if spec.recipe is not None else Recipe()
            old_child_dir, child_adapter = adapter_parts(ws, prod)
            work = ws.store.home / "work" / key
            shutil.rmtree(work, ignore_errors=True)
            # an adapter child is (its base, its adapter); a full child is its own weights
            own_data = _history_data(ws, child)
            try:
                replay = replay_files(ws, child, recipe, exclude=own_data)
            except LoopgateError as e:  # the child cannot be re-derived as its recipe asks: it stays pinned
                outcomes.append(PropagationOutcome(line=child, from_parent=old_parent, to_parent=parent_version,
                                                   pinned=True, note=str(e)))
                continue
            res = transfer(model_dir(ws, old_parent), model_dir(ws, parent_version),
                           old_child_dir if child_adapter is not None else model_dir(ws, prod),
                           child_adapter=child_adapter, recipe=recipe, data=_data_paths(ws, own_data),
                           accept=accept, out_root=work, progress=progress,
                           replay=replay,
                           strategies=list(spec.transfer) if spec.transfer is not None else None)
            attempts = [a.model_dump(mode="json") if hasattr(a, "model_dump") else dict(a) for a in res.attempts]
            if res.accepted is None:
                ws.store.record("propagation.pinned", child, {"parent": parent_version, "stays_on": old_parent,
                                                              "attempts": attempts}, actor=actor)
                outcomes.append(PropagationOutcome(line=child, from_parent=old_parent, to_parent=parent_version,
                                                   attempts=attempts, pinned=True,
                                                   note=f"every strategy failed; stays on {old_parent}"))
                shutil.rmtree(work, ignore_errors=True)
                continue
            cand = res.accepted
            strategy = cand.strategy
            is_adapter = cand.adapter_dir is not None
            new_v = register_model(
                ws, child, Path(cand.adapter_dir) if cand.adapter_dir is not None else Path(cand.model_dir),
                base=parent_version if is_adapter else None, actor=actor, source="transfer",
                parent_version=parent_version, recipe=recipe.model_dump(mode="json"),
                data_sha256=list(cv.data_sha256), seed=recipe.seed,
                provenance={"run_key": key, "strategy": strategy, "attempts": attempts, "built_from": prod,
                            "transferred_from": {"old_parent": old_parent, "old_child": prod},
                            "replay_sha256": [sha256_file(p) for p in replay]})
            shutil.rmtree(work, ignore_errors=True)
        rel = release_candidate(ws, new_v.id, actor=actor, progress=progress, propagate=True)
        outcomes.append(PropagationOutcome(line=child, from_parent=old_parent, to_parent=parent_version,
                                           strategy=strategy, attempts=attempts, version=new_v.id,
                                           verdict=rel.decision.verdict.value, released=rel.released,
                                           pinned=not rel.released,
                                           note="" if rel.released else f"decision {rel.decision.verdict.value}; "
                                                                        f"stays on {old_parent}"))
        outcomes.extend(rel.propagation)
    return outcomes


# ------------------------------------------------------------------------------------------- rollback


def rollback(ws: Workspace, line: str, *, to: str | None = None, reason: str = "", actor: str | None = None
             ) -> dict[str, Any]:
    """Move ``line``'s production back in one transaction, cascading to lines re-derived on the
    rolled-back version; apps follow their model line's channel and are listed as affected."""
    actor = actor or current_user()
    spec = ws.eco.line(line)
    if spec.tier is Tier.app:
        raise LoopgateError(f"'{line}' is an app: roll back its model line '{spec.parent}'")
    current = ws.store.channel(line, "production")
    if current is None:
        raise LoopgateError(f"line '{line}' has no production version to roll back")
    target = to or ws.store.rollback_target(line)
    if target is None:
        raise LoopgateError(f"line '{line}' has no earlier production version; pass --to VERSION")
    if ws.store.version(target).line != line:
        raise LoopgateError(f"{target} is not a version of '{line}'")
    problems = ws.store.verify_version(target)
    if problems:
        raise LoopgateError(f"cannot roll back to {target}: {problems[0]}")
    moves: list[tuple[str, str, str]] = [(line, "production", target)]
    if ws.store.channel(line, "canary") == current:
        moves.append((line, "canary", target))
    replaced = {current}
    cascade = []
    for d in ws.eco.descendants(line):
        dspec = ws.eco.lines[d]
        if dspec.tier is Tier.app:
            continue
        dprod = ws.store.channel(d, "production")
        if dprod is None or ws.store.version(dprod).parent_version not in replaced:
            continue
        dt = ws.store.rollback_target(d)
        if dt is None:
            continue
        moves.append((d, "production", dt))
        replaced.add(dprod)
        cascade.append({"line": d, "from": dprod, "to": dt})
    why = reason or "rollback"
    done = ws.store.move_channels(moves, kind="rollback", reason=why, actor=actor)
    moved_lines = {m[0] for m in moves}
    apps = [n for n, s in ws.eco.lines.items() if s.tier is Tier.app and s.parent in moved_lines]
    return {"line": line, "from": current, "to": target, "reason": why, "cascade": cascade,
            "apps_following": apps, "moves": [m.model_dump(mode="json") for m in done]}


def resume(ws: Workspace, *, progress: bool = False) -> ResumeOutcome:
    """Finish every run that was recorded as started but never finished (killed); runs that failed on a user
    error are reported, not re-run — they would fail the same way."""
    out = ResumeOutcome()
    for key, args in ws.store.open_steps("failed"):
        if key.startswith("run:") and args and args.get("command") == "update":
            out.failed.append(FailedRun(line=args["line"], data=args.get("data", []), error=args.get("error", "")))
    for key, args in ws.store.open_steps():
        if not key.startswith("run:") or not args or args.get("command") != "update":
            continue
        out.finished.append(_run_update(ws, key.removeprefix("run:"), args["line"], [Path(p) for p in args["data"]],
                                        recipe_name=args.get("recipe"), seed=args.get("seed"),
                                        actor=args.get("actor") or current_user(), progress=progress,
                                        propagate=bool(args.get("propagate", True)),
                                        again=bool(args.get("again"))))
    return out
