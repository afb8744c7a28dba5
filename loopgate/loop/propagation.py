"""Propagation: after a line ships, re-derive its downstream lines on the new version, in tier order.

The wave, top to bottom: for each child line with a production version, try the transfer strategies
cheapest first — each candidate is built by a job (:func:`loopgate.executors.jobs.transfer_candidate`),
evaluated, and decided through the same :func:`~loopgate.loop.gating.decide_candidate` as any release, on
the gates ``propagation.accept_gates`` names. The first accepted candidate becomes a version and goes through
the full release decision; a released child's own children join the wave. A child whose candidates all fail
stays on its old parent version (pinned) and its children are not touched. A line someone pinned
(``loopgate pin``, :mod:`.pins`) is not re-derived at all: it stays on its parent version, the outcome says who
pinned it and how to unpin it, and its children are not touched either. Apps follow their model line's
channel and need nothing here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopgate.errors import LoopgateError, TransferError
from loopgate.evaluate.suites import Suite
from loopgate.executors import jobs
from loopgate.hashing import sha256_file, sha256_json
from loopgate.loop.data import data_paths, history_data, replay_files
from loopgate.loop.evaluation import (
    PendingAdapterEvaluation,
    PendingEvaluation,
    line_suites,
    load_suites,
    profile_versions,
    submit_adapter_evaluations,
    submit_evaluation,
)
from loopgate.loop.gating import baselines_for, decide_candidate, release_candidate
from loopgate.loop.outcomes import PropagationOutcome
from loopgate.loop.planning import plan, strategies_for  # noqa: F401  # plan: re-exported (read-only, light)
from loopgate.loop.versions import adapter_parts, model_dir, register_model
from loopgate.loop.workspace import Workspace
from loopgate.records import Evaluation, Provenance, Verdict
from loopgate.spec import Recipe, Tier
from loopgate.store import VersionInfo
from loopgate.store.pins import line_pins
from loopgate.train.transfer import TransferAttempt, TransferCandidate, shapes_match


def propagate_from(ws: Workspace, parent_version: str, *, actor: str, progress: bool = False
                   ) -> list[PropagationOutcome]:
    """Run the wave below a newly released ``parent_version``: children first, then theirs (tier order).

    The children of one tier are independent, so they are re-derived together (:func:`rederive_many`): their
    candidates are built and evaluated as batches of jobs, which an executor with room runs at the same time."""
    line = ws.store.version(parent_version).line
    if ws.store.channel(line, "production") != parent_version:
        # the wave re-derives children on what production serves, never on a canary or a candidate
        raise LoopgateError(f"{parent_version} is not {line}'s production version; the downstream wave starts "
                            "from production only (promote it, or let the canary analysis promote it, first)")
    outcomes: list[PropagationOutcome] = []
    released = [parent_version]
    while released:
        pairs = [(child, r) for r in released for child in ws.eco.children(ws.store.version(r).line)
                 if ws.eco.lines[child].tier is not Tier.app]
        tier = rederive_many(ws, pairs, actor=actor, progress=progress)
        outcomes.extend(tier)
        # already-on-parent counts as released: a resumed wave finishes below it
        released = [o.version for o in tier if o.released and o.version]
    return outcomes


def rederive(ws: Workspace, child: str, parent_version: str, *, actor: str, progress: bool = False
             ) -> PropagationOutcome:
    """Re-derive ``child`` on ``parent_version``: the cheapest accepted strategy, released through the gates."""
    return rederive_many(ws, [(child, parent_version)], actor=actor, progress=progress)[0]


@dataclass
class _Transfer:
    """One child's re-derivation in progress: what every strategy's job and decision needs, and the attempts."""

    child: str
    prod: str
    old_parent: str
    parent_version: str
    key: str
    recipe: Recipe
    replay: list[Path]
    job_args: dict[str, Any]
    suites: list[Suite]
    work: Path
    baselines: dict[str, str | None]
    accept_gates: list[str]
    strategies: list[str]
    attempts: list[TransferAttempt] = field(default_factory=list)


def rederive_many(ws: Workspace, pairs: list[tuple[str, str]], *, actor: str, progress: bool = False
                  ) -> list[PropagationOutcome]:
    """Re-derive each ``(child, parent_version)`` — independent lines — and release the accepted ones.

    Every job (building candidates, evaluating them) is submitted for all children at once; every decision and
    every registry write is made here, in the order of ``pairs``, so any executor records the same versions."""
    outcomes: dict[int, PropagationOutcome] = {}
    transfers: dict[int, _Transfer] = {}
    found: dict[int, tuple[VersionInfo, list[TransferAttempt]]] = {}
    old_parents: dict[int, str] = {}
    reused: set[int] = set()
    pins = line_pins(ws.store)  # one read for the whole tier
    for i, (child, parent_version) in enumerate(pairs):
        prod = ws.store.channel(child, "production")
        if prod is None:
            outcomes[i] = PropagationOutcome(line=child, to_parent=parent_version,
                                             note="no production version yet; nothing to re-derive")
            continue
        cv = ws.store.version(prod)
        if cv.parent_version == parent_version:
            outcomes[i] = PropagationOutcome(line=child, from_parent=parent_version, to_parent=parent_version,
                                             version=prod, released=True, note="already on this parent")
            continue
        old_parent = cv.parent_version
        if child in pins:
            outcomes[i] = PropagationOutcome(line=child, from_parent=old_parent, to_parent=parent_version, pinned=True,
                                             note=f"{pins[child].note}; stays on {old_parent or prod}")
            continue
        if old_parent is None:
            outcomes[i] = PropagationOutcome(line=child, to_parent=parent_version, pinned=True,
                                             note=f"{prod} records no parent version; cannot transfer")
            continue
        old_parents[i] = old_parent
        key = sha256_json(["propagate", child, prod, parent_version])[:16]
        existing = [v for v in ws.store.versions(child) if Provenance.of(v.provenance).run_key == key]
        if existing:  # the accepted child was registered by an earlier run (a resumed or repeated wave): its
            # attempts ran then, not in this command, so they are not reported as if they had (the version's
            # provenance keeps them)
            found[i] = (existing[-1], [])
            reused.add(i)
            continue
        try:
            transfers[i] = _transfer(ws, child, prod, old_parent, parent_version, key, progress=progress)
        except LoopgateError as e:  # e.g. replay the child's recipe asks for is not there: it stays pinned
            outcomes[i] = PropagationOutcome(line=child, from_parent=old_parent, to_parent=parent_version,
                                             pinned=True, note=str(e))
    for i, result in _accepted_candidates(ws, transfers, actor=actor, progress=progress).items():
        t = transfers[i]
        if isinstance(result, LoopgateError):
            outcomes[i] = PropagationOutcome(line=t.child, from_parent=t.old_parent, to_parent=t.parent_version,
                                             attempts=t.attempts, pinned=True, note=str(result))
        elif isinstance(result, VersionInfo):
            found[i] = (result, t.attempts)
        else:
            ws.store.record("propagation.pinned", t.child, {
                "parent": t.parent_version, "stays_on": t.old_parent,
                "attempts": [a.model_dump(mode="json") for a in t.attempts]}, actor=actor)
            outcomes[i] = PropagationOutcome(line=t.child, from_parent=t.old_parent, to_parent=t.parent_version,
                                             attempts=t.attempts, pinned=True,
                                             note=f"every strategy failed; stays on {t.old_parent}")
        ws.store.remove_work_dir(t.key)
    # the accepted children face every gate, as any release, one by one (serving speed is measured back to back
    # and must not share the machine); what the gates need from the weights alone — the profiles — is measured
    # first, for all of them as one batch (a resumed child may have its decision already: nothing to measure)
    fresh = [v for i, (v, _) in found.items() if i in transfers]
    profile_versions(ws, [(v.id, ws.eco.policy_for(v.line).plasticity.probe_steps) for v in fresh])
    for i in sorted(found):
        new_v, attempts = found[i]
        child, parent_version = pairs[i]
        old_parent = old_parents[i]
        rel = release_candidate(ws, new_v.id, actor=actor, progress=progress)
        outcomes[i] = PropagationOutcome(
            line=child, from_parent=old_parent, to_parent=parent_version,
            strategy=Provenance.of(new_v.provenance).strategy,
            attempts=attempts, version=new_v.id, verdict=rel.decision.verdict.value, released=rel.released,
            pinned=not rel.released,
            note=("" if rel.released else f"decision {rel.decision.verdict.value}; stays on {old_parent}")
            + (f"{'; ' if not rel.released else ''}{new_v.id} was re-derived by an earlier run (its attempts are "
               "in its provenance)" if i in reused else ""))
    return [outcomes[i] for i in range(len(pairs))]


def _transfer(ws: Workspace, child: str, prod: str, old_parent: str, parent_version: str, key: str, *,
              progress: bool) -> _Transfer:
    """Everything a child's re-derivation needs before its first candidate is built."""
    spec = ws.eco.lines[child]
    recipe = ws.eco.recipe_for(child) if spec.recipe is not None else Recipe()
    own_data = history_data(ws, child)
    replay = replay_files(ws, child, recipe, exclude=own_data)
    old_parent_dir, new_parent_dir = model_dir(ws, old_parent), model_dir(ws, parent_version)
    old_child_dir, child_adapter = adapter_parts(ws, prod)
    if child_adapter is None:
        old_child_dir = model_dir(ws, prod)
    owned, inherited = line_suites(ws, child)
    work = ws.store.work_dir(key)
    return _Transfer(
        child=child, prod=prod, old_parent=old_parent, parent_version=parent_version, key=key, recipe=recipe,
        replay=replay, suites=load_suites(ws, owned + inherited),
        job_args={"old_parent": old_parent_dir, "new_parent": new_parent_dir, "old_child": old_child_dir,
                  "child_adapter": child_adapter, "recipe": recipe, "data": data_paths(ws, own_data),
                  "replay": replay, "progress": progress},
        work=work,
        baselines=baselines_for(ws, child, built_from=prod, parent_version=parent_version),
        accept_gates=list(ws.eco.policy_for(child).propagation.accept_gates),
        strategies=strategies_for(ws, child, has_adapter=child_adapter is not None,
                                  shapes=shapes_match(old_parent_dir, new_parent_dir)))


def _accepted_candidates(ws: Workspace, transfers: dict[int, _Transfer], *, actor: str, progress: bool
                         ) -> dict[int, VersionInfo | list[TransferAttempt] | LoopgateError]:
    """Try the strategies cheapest first, in rounds: round k builds every still-searching child's k-th candidate
    (one batch of jobs), evaluates them (one batch), then decides each on the acceptance gates. The first
    candidate a child's gates pass is registered as a version; a child with no strategy left gets its attempts;
    a child whose job or decision fails (other than a strategy that does not apply) gets the error."""
    results: dict[int, VersionInfo | list[TransferAttempt] | LoopgateError] = {}
    searching = dict(transfers)
    for k in range(max((len(t.strategies) for t in transfers.values()), default=0)):
        for i in [i for i, t in searching.items() if k >= len(t.strategies)]:
            results[i] = searching.pop(i).attempts
        started = time.perf_counter()
        handles = {i: ws.executor.submit(jobs.transfer_candidate, strategy=t.strategies[k],
                                         out_dir=t.work / t.strategies[k], **t.job_args)
                   for i, t in searching.items()}
        built: dict[int, TransferCandidate] = {}
        for i, handle in handles.items():
            t = searching[i]
            try:
                built[i] = handle.result()
            except TransferError as err:
                t.attempts.append(TransferAttempt(strategy=t.strategies[k], accepted=False,
                                                  reason=f"not applicable: {err}",
                                                  wall_s=round(time.perf_counter() - started, 3)))
            except LoopgateError as err:
                results[i] = err
                del searching[i]
        pending = _submit_round(ws, built, searching, k, progress)
        for i, cand in built.items():
            t = searching[i]
            try:
                accepted = _accept(ws, t, t.strategies[k], cand, pending[i].result(), started, actor=actor,
                                   progress=progress)
            except LoopgateError as err:
                results[i] = err
                del searching[i]
                continue
            if accepted is not None:
                results[i] = accepted
                del searching[i]
    results.update({i: t.attempts for i, t in searching.items()})
    return results


def _submit_round(ws: Workspace, built: dict[int, TransferCandidate], searching: dict[int, _Transfer], k: int,
                  progress: bool) -> dict[int, PendingEvaluation | PendingAdapterEvaluation]:
    """The round's evaluations, submitted together: adapter candidates re-attached to the same new parent are
    evaluated through one loaded base (never merged), as the gateway serves them; any other candidate is
    evaluated as its full model."""
    label = {i: f"{searching[i].child}<-{searching[i].strategies[k]}" for i in built}
    on_base: dict[Path, list[int]] = {}
    for i, c in built.items():
        if c.adapter_dir is not None:
            on_base.setdefault(Path(c.base_dir), []).append(i)
    pending: dict[int, PendingEvaluation | PendingAdapterEvaluation] = {}
    for base, members in on_base.items():
        if len(members) > 1:  # one adapter alone gains nothing from a shared base
            parts = submit_adapter_evaluations(ws, base, [(label[i], Path(built[i].adapter_dir or ""),
                                                           searching[i].suites) for i in members])
            pending.update({i: parts[label[i]] for i in members})
    for i, c in built.items():
        if i not in pending:
            pending[i] = submit_evaluation(ws, Path(c.model_dir), searching[i].suites, label[i], progress)
    return pending


def _accept(ws: Workspace, t: _Transfer, strategy: str, cand: TransferCandidate, evals: dict[str, Evaluation],
            started: float, *, actor: str, progress: bool) -> VersionInfo | None:
    """Decide one candidate on the acceptance gates; register it as a version when they pass outright."""
    decision = decide_candidate(
        ws, line=t.child, candidate=f"{t.child}<-{strategy}", candidate_dir=Path(cand.model_dir),
        candidate_evals=evals, baselines=t.baselines, requester=actor, gates=t.accept_gates, progress=progress)
    # acceptance means the gates pass outright: an inconclusive candidate would block the release anyway
    accepted = decision.verdict is Verdict.passed
    reason = "; ".join(f"{g.name}: {g.verdict.value}" + ("" if accepted else f" — {g.summary}")
                       for g in decision.gates if accepted or g.verdict is not Verdict.passed)
    t.attempts.append(TransferAttempt(strategy=strategy, accepted=accepted, reason=reason,
                                      wall_s=round(time.perf_counter() - started, 3)))
    if not accepted:
        return None
    is_adapter = cand.adapter_dir is not None
    return register_model(
        ws, t.child, Path(cand.adapter_dir) if is_adapter else Path(cand.model_dir),  # type: ignore[arg-type]
        base=t.parent_version if is_adapter else None, actor=actor, source="transfer",
        parent_version=t.parent_version, recipe=t.recipe.model_dump(mode="json"),
        data_sha256=list(ws.store.version(t.prod).data_sha256), seed=t.recipe.seed,
        provenance={"run_key": t.key, "strategy": strategy,
                    "attempts": [a.model_dump(mode="json") for a in t.attempts], "built_from": t.prod,
                    "transferred_from": {"old_parent": t.old_parent, "old_child": t.prod},
                    "replay_sha256": [sha256_file(p) for p in t.replay],
                    "decision_gates": t.accept_gates})
