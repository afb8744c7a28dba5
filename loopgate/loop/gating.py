"""Gating: the one place a candidate is decided.

Read it top to bottom: choose the baselines (:func:`baselines_for`), gather what the gates judge
(:func:`gate_context` — evaluations, profiles, the rollback target re-scored, serving speed, approvals),
decide (:func:`decide_candidate`, over :func:`loopgate.gates.policy.decide`), and for a version record the
decision and move its channels (:func:`release_candidate`). A release, propagation's acceptance of a
re-derived child and a tuning trial all decide through :func:`decide_candidate`; only which gates count
differs, and that is policy (``propagation.accept_gates``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from loopgate.errors import ArtifactError
from loopgate.gates.context import ApprovalRecord, GateContext
from loopgate.gates.policy import decide
from loopgate.hashing import sha256_json
from loopgate.loop.context import line_context
from loopgate.loop.evaluation import evaluate_version, line_suites, load_suites, profile_dir, profile_version
from loopgate.loop.faults import kill_point
from loopgate.loop.measurements import rollback_check, serving_measurements
from loopgate.loop.outcomes import ReleaseOutcome
from loopgate.loop.versions import version_ref
from loopgate.loop.workspace import Workspace, current_user
from loopgate.models.io import ModelRef
from loopgate.records import Decision, Evaluation, Provenance, Verdict
from loopgate.spec import Policy
from loopgate.store import ChannelMove
from loopgate.store.registry import Approval

# gates whose evidence needs more than evaluations: gathered only when one of them is decided
_NEEDS_PROFILES = {"plasticity", "cost"}


def baselines_for(ws: Workspace, line: str, *, built_from: str | None, parent_version: str | None,
                  candidate: str | None = None) -> dict[str, str | None]:
    """What a candidate of ``line`` is compared with — the one function that says so, stored in its decision:
    ``production`` (what a release would replace), ``previous`` (the version it was built from when production
    held it, else the line's latest earlier version that production held) and ``parent`` (the parent line's
    version it was built on). A baseline is always a version that shipped: a candidate that was rejected (or
    never decided) never judges the next one. :func:`baseline_notes` says why each was chosen."""
    return {role: vid for role, (vid, _) in _baselines(ws, line, built_from=built_from,
                                                       parent_version=parent_version, candidate=candidate).items()}


def baseline_notes(ws: Workspace, line: str, *, built_from: str | None, parent_version: str | None,
                   candidate: str | None = None) -> dict[str, str]:
    """Why :func:`baselines_for` chose each baseline (recorded in the decision)."""
    return {role: why for role, (_, why) in _baselines(ws, line, built_from=built_from,
                                                       parent_version=parent_version, candidate=candidate).items()}


def _baselines(ws: Workspace, line: str, *, built_from: str | None, parent_version: str | None,
               candidate: str | None) -> dict[str, tuple[str | None, str]]:
    prod = ws.store.channel(line, "production")
    if prod is None or prod == candidate:
        production: tuple[str | None, str] = (None, f"{line} has no production version other than the candidate")
    else:
        production = (prod, f"{prod} is {line}'s production version, which a release would replace")
    number = ws.store.version(candidate).number if candidate else None
    held = ws.store.production_held(line)
    shipped = [v for v in ws.store.versions(line) if (number is None or v.number < number)
               and v.id != candidate and v.id in held]
    own = built_from if built_from and built_from.startswith(f"{line}@") and built_from != candidate else None
    if own is not None and own in held:
        previous: tuple[str | None, str] = (own, f"the candidate was built from {own}, which production held")
    elif shipped:
        skipped = f" ({own}, which it was built from, never shipped)" if own else ""
        previous = (shipped[-1].id, f"{shipped[-1].id} is the latest earlier version production held{skipped}")
    else:
        previous = (None, f"no earlier version of {line} was ever in production")
    parent = ws.eco.line(line).parent
    if parent_version:
        par: tuple[str | None, str] = (parent_version, f"the candidate was built on {parent_version}")
    elif parent and (pp := ws.store.channel(parent, "production")):
        par = (pp, f"{pp} is {parent}'s production version")
    else:
        par = (None, "no parent version")
    return {"production": production, "previous": previous, "parent": par}


def version_baselines(ws: Workspace, version_id: str) -> dict[str, str | None]:
    """:func:`baselines_for` a stored version."""
    v = ws.store.version(version_id)
    return baselines_for(ws, v.line, built_from=Provenance.of(v.provenance).built_from,
                         parent_version=v.parent_version, candidate=version_id)


def version_baseline_notes(ws: Workspace, version_id: str) -> dict[str, str]:
    """:func:`baseline_notes` for a stored version."""
    v = ws.store.version(version_id)
    return baseline_notes(ws, v.line, built_from=Provenance.of(v.provenance).built_from,
                          parent_version=v.parent_version, candidate=version_id)


def _foundation_reference(ws: Workspace, line: str) -> str | None:
    """The first version of the line's foundation: the plasticity reference."""
    first = ws.store.versions(([line] + ws.eco.ancestors(line))[-1])
    return first[0].id if first else None


def gate_context(ws: Workspace, *, line: str, candidate: str, candidate_dir: Path | ModelRef,
                 candidate_evals: dict[str, Evaluation], baselines: dict[str, str | None], requester: str,
                 policy: Policy, approvals: list[ApprovalRecord] | None = None, gates: list[str] | None = None,
                 progress: bool = False) -> GateContext:
    """Gather what the gates judge about a candidate — a stored version or a re-derived child that is not one
    yet — against its baselines. Only what ``gates`` need is gathered (``None``: every gate)."""
    lc = line_context(ws, line)
    owned, inherited, suites = list(lc.owned), list(lc.inherited), lc.suites
    wanted = set(gates) if gates is not None else None

    def needed(*names: str) -> bool:
        return wanted is None or bool(wanted & set(names))

    base_evals: dict[str, dict[str, Evaluation]] = {}
    for role, bid in baselines.items():
        names = inherited if role == "parent" else suites
        if bid is not None and names:
            base_evals[role] = evaluate_version(ws, bid, names, progress=progress)
    cand_profile: dict[str, float] = {}
    base_profiles: dict[str, dict[str, float]] = {}
    if needed(*_NEEDS_PROFILES):
        steps = policy.plasticity.probe_steps
        cand_profile = profile_dir(ws, candidate_dir, steps)
        ref = _foundation_reference(ws, line)
        if ref is not None and needed("plasticity"):
            base_profiles["foundation"] = profile_version(ws, ref, steps)
        for role in ("production", "previous"):
            bid = baselines.get(role)
            if bid:
                try:
                    base_profiles[role] = profile_version(ws, bid, steps)
                except ArtifactError:
                    pass  # a baseline whose weights are gone: the rollback gate reports it, plasticity skips it
    rb = None
    if needed("rollback"):
        rb = rollback_check(ws, baselines.get("production"), policy.rollback.smoke_suite or
                            (suites[0] if suites else None))
    ctx = GateContext(
        line=line, tier=lc.tier, candidate=candidate, requester=requester,
        owned_suites=owned, inherited_suites=inherited,
        safety_suites=list(lc.safety), candidate_evals=candidate_evals,
        baselines=baselines, baseline_evals=base_evals, candidate_profile=cand_profile,
        baseline_profiles=base_profiles, rollback=rb, approvals=approvals or [],
        price_per_hour=policy.release.price_per_hour)
    if needed("cost"):
        ctx = ctx.model_copy(update={"serving": serving_measurements(ws, ctx, candidate_dir, policy.cost)})
    return ctx


def decide_candidate(ws: Workspace, *, line: str, candidate: str, candidate_dir: Path | ModelRef,
                     candidate_evals: dict[str, Evaluation], baselines: dict[str, str | None], requester: str,
                     approvals: list[ApprovalRecord] | None = None, gates: list[str] | None = None,
                     progress: bool = False) -> Decision:
    """The decision on a candidate under its line's policy (every gate, or only ``gates``)."""
    policy = line_context(ws, line).policy
    ctx = gate_context(ws, line=line, candidate=candidate, candidate_dir=candidate_dir,
                       candidate_evals=candidate_evals, baselines=baselines, requester=requester, policy=policy,
                       approvals=approvals, gates=gates, progress=progress)
    return decide(ctx, policy, gates)


# ------------------------------------------------------------------------------------------- a version


def fresh_decisions(ws: Workspace, version_id: str) -> list[Decision]:
    """The version's decisions that may still move a channel: those made after it was last rolled back (a
    rolled-back version ships again only through a new decision, with new approvals)."""
    stale = ws.store.stale_since(version_id)
    decisions = ws.store.decisions(version_id)
    if stale is None:
        return decisions
    return [d for d in decisions if _aware(d.created_at) > stale]


def bound_approvals(ws: Workspace, version_id: str) -> list[Approval]:
    """The approvals that count for the version's next decision: each approves one of its fresh decisions."""
    fresh = {d.id for d in fresh_decisions(ws, version_id)}
    return [a for a in ws.store.approvals(version_id) if a.decision_id is not None and a.decision_id in fresh]


def _decision_inputs(ws: Workspace, version_id: str, baselines: dict[str, str | None], policy_sha: str,
                     approvals: list[Approval]) -> str:
    """What a version's decision is computed from: the same inputs give the same decision."""
    owned, inherited = line_suites(ws, ws.store.version(version_id).line)
    return sha256_json({"version": version_id, "baselines": baselines, "policy": policy_sha,
                        "suites": [s.sha256 for s in load_suites(ws, owned + inherited)],
                        "approvals": [[a.approver, a.reason, a.overrides, a.decision_id] for a in approvals]})


def version_decision(ws: Workspace, version_id: str, *, actor: str, progress: bool = False) -> Decision:
    """Decide a stored version (every gate) and record the decision — or return the recorded one when its
    inputs have not changed (a resumed run does not decide twice). Only fresh decisions are reused and only
    approvals bound to them count (:func:`fresh_decisions`)."""
    v = ws.store.version(version_id)
    policy = line_context(ws, v.line).policy
    baselines = version_baselines(ws, version_id)
    approvals = bound_approvals(ws, version_id)
    inputs = _decision_inputs(ws, version_id, baselines, policy.sha256(), approvals)
    decisions = fresh_decisions(ws, version_id)
    prior = [d for d in decisions if d.inputs_sha256 == inputs]
    if prior:
        return prior[-1]
    owned, inherited = line_suites(ws, v.line)
    decision = decide_candidate(
        ws, line=v.line, candidate=version_id, candidate_dir=version_ref(ws, version_id),
        candidate_evals=evaluate_version(ws, version_id, owned + inherited, progress=progress),
        baselines=baselines, requester=decisions[0].requester if decisions else actor,
        approvals=[ApprovalRecord(approver=a.approver, reason=a.reason, overrides=a.overrides)
                   for a in approvals], progress=progress)
    decision = decision.model_copy(update={"inputs_sha256": inputs,
                                           "baseline_notes": version_baseline_notes(ws, version_id)})
    decision = ws.store.add_decision(decision, actor=actor)
    kill_point("after-decision")
    return decision


def release_candidate(ws: Workspace, version_id: str, *, actor: str | None = None, progress: bool = False
                      ) -> ReleaseOutcome:
    """Decide a version and, if the decision passes (and the policy releases automatically), move its
    channels — canary first where the policy says so. Propagation is the caller's next step."""
    actor = actor or current_user()
    v = ws.store.version(version_id)
    if ws.store.channel(v.line, "production") == version_id and fresh_decisions(ws, version_id):
        # already released (a re-run after a kill): nothing to decide again
        return ReleaseOutcome(version=version_id, decision=fresh_decisions(ws, version_id)[-1], released=True)
    seen = ws.store.channels(v.line)  # a channel that moves while this release decides is a ConflictError
    decision = version_decision(ws, version_id, actor=actor, progress=progress)
    out = ReleaseOutcome(version=version_id, decision=decision, released=False)
    if decision.verdict is Verdict.passed and line_context(ws, v.line).policy.release.auto_release:
        out.channel_moves = _release_moves(ws, version_id, decision, actor, seen)
        out.released = True
    return out


def _release_moves(ws: Workspace, version_id: str, decision: Decision, actor: str,
                   seen: dict[str, str | None]) -> list[ChannelMove]:
    line = ws.store.version(version_id).line
    # with canary on, a release moves only `canary` (production follows the canary analysis, loop/canary.py);
    # a line's first release has no production to compare a canary with and goes straight to production
    canary = line_context(ws, line).policy.release.canary and ws.store.channel(line, "production") is not None
    channels = ["canary"] if canary else ["production"]
    moves: list[ChannelMove] = []
    for channel in channels:
        moves += ws.store.move_channels([(line, channel, version_id)], kind="release",
                                        reason=f"decision {decision.id}: pass", actor=actor,
                                        decision_id=decision.id, expected={(line, channel): seen[channel]})
    return moves


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
