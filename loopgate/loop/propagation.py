"""Propagation: after a line ships, re-derive its downstream lines on the new version, in tier order.

The wave, top to bottom: for each child line with a production version, try the transfer strategies
cheapest first — each candidate is built by a job (:func:`loopgate.executors.jobs.transfer_candidate`),
evaluated, and decided through the same :func:`~loopgate.loop.gating.decide_candidate` as any release, on
the gates ``propagation.accept_gates`` names. The first accepted candidate becomes a version and goes through
the full release decision; a released child's own children join the wave. A child whose candidates all fail
stays on its old parent version (pinned) and its children are not touched. Apps follow their model line's
channel and need nothing here.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from loopgate.errors import LoopgateError, TransferError
from loopgate.executors import jobs
from loopgate.hashing import sha256_file, sha256_json
from loopgate.loop.data import data_paths, history_data, replay_files
from loopgate.loop.evaluation import evaluate_dir, line_suites, load_suites
from loopgate.loop.gating import baselines_for, decide_candidate, release_candidate
from loopgate.loop.outcomes import PropagationOutcome
from loopgate.loop.planning import plan, strategies_for  # noqa: F401  # plan: re-exported (read-only, light)
from loopgate.loop.versions import adapter_parts, model_dir, register_model
from loopgate.loop.workspace import Workspace
from loopgate.records import Verdict
from loopgate.spec import Recipe, Tier
from loopgate.store import VersionInfo
from loopgate.train.transfer import TransferAttempt, TransferCandidate, shapes_match


def propagate_from(ws: Workspace, parent_version: str, *, actor: str, progress: bool = False
                   ) -> list[PropagationOutcome]:
    """Run the wave below a newly released ``parent_version``: children first, then theirs (tier order)."""
    outcomes: list[PropagationOutcome] = []
    queue = deque([parent_version])
    while queue:
        released = queue.popleft()
        for child in ws.eco.children(ws.store.version(released).line):
            if ws.eco.lines[child].tier is Tier.app:
                continue
            outcome = rederive(ws, child, released, actor=actor, progress=progress)
            outcomes.append(outcome)
            if outcome.released and outcome.version:  # already-on-parent too: a resumed wave finishes below it
                queue.append(outcome.version)
    return outcomes


def rederive(ws: Workspace, child: str, parent_version: str, *, actor: str, progress: bool = False
             ) -> PropagationOutcome:
    """Re-derive ``child`` on ``parent_version``: the cheapest accepted strategy, released through the gates."""
    prod = ws.store.channel(child, "production")
    if prod is None:
        return PropagationOutcome(line=child, to_parent=parent_version,
                                  note="no production version yet; nothing to re-derive")
    cv = ws.store.version(prod)
    if cv.parent_version == parent_version:
        return PropagationOutcome(line=child, from_parent=parent_version, to_parent=parent_version, version=prod,
                                  released=True, note="already on this parent")
    old_parent = cv.parent_version
    if old_parent is None:
        return PropagationOutcome(line=child, to_parent=parent_version, pinned=True,
                                  note=f"{prod} records no parent version; cannot transfer")
    key = sha256_json(["propagate", child, prod, parent_version])[:16]
    existing = [v for v in ws.store.versions(child) if v.provenance.get("run_key") == key]
    if existing:  # a resumed wave: the accepted child was registered before the kill
        new_v = existing[-1]
        attempts = [TransferAttempt.model_validate(a) for a in new_v.provenance.get("attempts", [])]
    else:
        try:
            found = _accepted_candidate(ws, child, prod, old_parent, parent_version, key, actor=actor,
                                        progress=progress)
        except LoopgateError as e:  # e.g. replay the child's recipe asks for is not there: it stays pinned
            return PropagationOutcome(line=child, from_parent=old_parent, to_parent=parent_version, pinned=True,
                                      note=str(e))
        if isinstance(found, list):
            attempts_json = [a.model_dump(mode="json") for a in found]
            ws.store.record("propagation.pinned", child, {"parent": parent_version, "stays_on": old_parent,
                                                          "attempts": attempts_json}, actor=actor)
            ws.store.remove_work_dir(key)
            return PropagationOutcome(line=child, from_parent=old_parent, to_parent=parent_version,
                                      attempts=found, pinned=True,
                                      note=f"every strategy failed; stays on {old_parent}")
        new_v, attempts = found
        ws.store.remove_work_dir(key)
    rel = release_candidate(ws, new_v.id, actor=actor, progress=progress)
    return PropagationOutcome(line=child, from_parent=old_parent, to_parent=parent_version,
                              strategy=new_v.provenance.get("strategy"), attempts=attempts, version=new_v.id,
                              verdict=rel.decision.verdict.value, released=rel.released, pinned=not rel.released,
                              note="" if rel.released else f"decision {rel.decision.verdict.value}; "
                                                           f"stays on {old_parent}")


def _accepted_candidate(ws: Workspace, child: str, prod: str, old_parent: str, parent_version: str, key: str,
                        *, actor: str, progress: bool) -> tuple[VersionInfo, list[TransferAttempt]] | list[
                            TransferAttempt]:
    """Try the strategies cheapest first; the first candidate the acceptance gates pass is registered as a
    version. Every attempt when none passes."""
    spec = ws.eco.lines[child]
    recipe = ws.eco.recipe_for(child) if spec.recipe is not None else Recipe()
    own_data = history_data(ws, child)
    replay = replay_files(ws, child, recipe, exclude=own_data)
    old_parent_dir, new_parent_dir = model_dir(ws, old_parent), model_dir(ws, parent_version)
    old_child_dir, child_adapter = adapter_parts(ws, prod)
    if child_adapter is None:
        old_child_dir = model_dir(ws, prod)
    owned, inherited = line_suites(ws, child)
    suites = load_suites(ws, owned + inherited)
    baselines = baselines_for(ws, child, built_from=prod, parent_version=parent_version)
    accept_gates: list[str] = list(ws.eco.policy_for(child).propagation.accept_gates)
    work = ws.store.work_dir(key)
    attempts: list[TransferAttempt] = []
    strategies = strategies_for(ws, child, has_adapter=child_adapter is not None,
                                shapes=shapes_match(old_parent_dir, new_parent_dir))
    for strategy in strategies:
        started = time.perf_counter()
        label = f"{child}<-{strategy}"
        try:
            cand: TransferCandidate = ws.executor.run(
                jobs.transfer_candidate, strategy=strategy, old_parent=old_parent_dir, new_parent=new_parent_dir,
                old_child=old_child_dir, child_adapter=child_adapter, recipe=recipe,
                data=data_paths(ws, own_data), replay=replay, out_dir=work / strategy, progress=progress)
        except TransferError as err:
            attempts.append(TransferAttempt(strategy=strategy, accepted=False, reason=f"not applicable: {err}",
                                            wall_s=round(time.perf_counter() - started, 3)))
            continue
        decision = decide_candidate(
            ws, line=child, candidate=label, candidate_dir=Path(cand.model_dir),
            candidate_evals=evaluate_dir(ws, Path(cand.model_dir), suites, label, progress), baselines=baselines,
            requester=actor, gates=accept_gates, progress=progress)
        # acceptance means the gates pass outright: an inconclusive candidate would block the release anyway
        accepted = decision.verdict is Verdict.passed
        reason = "; ".join(f"{g.name}: {g.verdict.value}" + ("" if accepted else f" — {g.summary}")
                           for g in decision.gates if accepted or g.verdict is not Verdict.passed)
        attempts.append(TransferAttempt(strategy=strategy, accepted=accepted, reason=reason,
                                        wall_s=round(time.perf_counter() - started, 3)))
        if accepted:
            is_adapter = cand.adapter_dir is not None
            version = register_model(
                ws, child, Path(cand.adapter_dir) if is_adapter else Path(cand.model_dir),  # type: ignore[arg-type]
                base=parent_version if is_adapter else None, actor=actor, source="transfer",
                parent_version=parent_version, recipe=recipe.model_dump(mode="json"),
                data_sha256=list(ws.store.version(prod).data_sha256), seed=recipe.seed,
                provenance={"run_key": key, "strategy": strategy,
                            "attempts": [a.model_dump(mode="json") for a in attempts], "built_from": prod,
                            "transferred_from": {"old_parent": old_parent, "old_child": prod},
                            "replay_sha256": [sha256_file(p) for p in replay],
                            "decision_gates": accept_gates})
            return version, attempts
    return attempts
