"""The verbs that move channels: release (and approve), promote, rollback.

A channel moves only through a recorded decision (release, approve, promote), a recorded rollback or a
recorded canary check (loop/canary.py). With ``release.canary`` on, a release moves only ``canary``;
production follows when the canary analysis passes, or by ``promote``. A release or a promotion to
production starts the downstream wave; a rollback cascades to the lines that were
re-derived on what it rolls back.
"""

from __future__ import annotations

from loopgate.errors import LoopgateError
from loopgate.loop.gating import fresh_decisions, release_candidate
from loopgate.loop.outcomes import CascadeMove, PromoteOutcome, ReleaseOutcome, RollbackOutcome
from loopgate.loop.propagation import propagate_from
from loopgate.loop.rules import CLI_ROLE, check_force, record_approval
from loopgate.loop.workspace import Workspace, current_user
from loopgate.records import Verdict
from loopgate.spec import Tier
from loopgate.store.tokens import TokenInfo


def release(ws: Workspace, version_id: str, *, actor: str | None = None, progress: bool = False,
            propagate: bool = True) -> ReleaseOutcome:
    """``loopgate release``: decide a version (a registered one, or a candidate held back) and release it if
    the gates allow — to ``canary`` only when the policy asks for a canary — then run the downstream wave
    once production holds it."""
    actor = actor or current_user()
    out = release_candidate(ws, version_id, actor=actor, progress=progress)
    # a canary release moves only `canary`: the wave starts when production follows (loop/canary.py, promote)
    on_production = ws.store.channel(ws.store.version(version_id).line, "production") == version_id
    if out.released:
        out.released_to = "production" if on_production else "canary"
    if out.released and propagate and on_production:
        out.propagation = propagate_from(ws, version_id, actor=actor, progress=progress)
    return out


def approve(ws: Workspace, version_id: str, approver: str, reason: str, overrides: list[str] | None = None,
            progress: bool = False, *, token_created_by: str | None = None) -> ReleaseOutcome:
    """Record an approval of the version's pending decision, then decide again (evaluations are cached) and
    release if it now passes."""
    record_approval(ws, version_id, approver, reason, overrides, token_created_by=token_created_by)
    return release(ws, version_id, actor=approver, progress=progress)


def approve_as(ws: Workspace, version_id: str, token: TokenInfo, reason: str, overrides: list[str]
               ) -> ReleaseOutcome:
    """:func:`approve` as an API token's identity (the REST API and the dashboard): the approver is the token's
    name, and the token's creator counts for the two-person rule (:func:`loopgate.loop.rules.check_approval`)."""
    return approve(ws, version_id, token.name, reason, overrides, token_created_by=token.created_by)


def promote(ws: Workspace, version_id: str, channel: str, *, actor: str | None = None, progress: bool = False
            ) -> PromoteOutcome:
    """Move a channel to a version that holds a passing decision made since it was last rolled back (channels
    move only through decisions); promoting to production starts the downstream wave, as a release does."""
    actor = actor or current_user()
    v = ws.store.version(version_id)
    decisions = [d for d in fresh_decisions(ws, version_id) if d.verdict is Verdict.passed]
    if not decisions:
        raise ws.store.refuse_move(
            v.line, channel, version_id, kind="promote", actor=actor,
            why=f"{version_id} has no passing decision since it was last released or rolled back; gate it first "
                f"(loopgate release {version_id}), or approve it if the decision is inconclusive")
    moves = ws.store.move_channels([(v.line, channel, version_id)], kind="promote",
                                   reason=f"decision {decisions[-1].id}: pass", actor=actor,
                                   decision_id=decisions[-1].id)
    props = propagate_from(ws, version_id, actor=actor, progress=progress) if channel == "production" else []
    return PromoteOutcome(moves=moves, propagation=props)


def rollback(ws: Workspace, line: str, *, to: str | None = None, reason: str = "", actor: str | None = None,
             force: bool = False, role: str = CLI_ROLE) -> RollbackOutcome:
    """Move ``line``'s production back in one transaction, cascading to lines re-derived on the
    rolled-back version; apps follow their model line's channel and are listed as affected. The target must
    be a version production held (released or promoted), unless an admin forces it with a reason."""
    actor = actor or current_user()
    if force:
        check_force(role, reason)
    spec = ws.eco.line(line)
    if spec.tier is Tier.app:
        raise LoopgateError(f"'{line}' is an app: roll back its model line '{spec.parent}'")
    current = ws.store.channel(line, "production")
    if current is None:
        raise LoopgateError(f"line '{line}' has no production version to roll back")
    target = to or ws.store.rollback_target(line)
    if target is None:
        raise LoopgateError(f"line '{line}' has no earlier production version; name the version to roll back to")
    ws.store.version(target)  # an unknown version is a 404, not a refusal
    refusal = ws.store.move_refusal(line, "production", target, kind="rollback", decision_id=None, forced=force)
    problems = [refusal] if refusal else ws.store.verify_version(target)
    if problems:
        raise ws.store.refuse_move(line, "production", target, kind="rollback", actor=actor,
                                   why=f"cannot roll back {line} to {target}: {problems[0]}")
    moves: list[tuple[str, str, str]] = [(line, "production", target)]
    seen: dict[tuple[str, str], str | None] = {(line, "production"): current}  # what this rollback decided on
    if ws.store.channel(line, "canary") == current:
        moves.append((line, "canary", target))
        seen[(line, "canary")] = current
    # a rollback onto what production already serves replaces nothing: no line below it is rolled back
    replaced = {current} if target != current else set()
    cascade: list[CascadeMove] = []
    for d in ws.eco.descendants(line) if replaced else []:
        if ws.eco.lines[d].tier is Tier.app:
            continue
        dprod = ws.store.channel(d, "production")
        if dprod is None or ws.store.version(dprod).parent_version not in replaced:
            continue
        dt = ws.store.rollback_target(d)
        if dt is None:
            continue
        moves.append((d, "production", dt))
        seen[(d, "production")] = dprod
        replaced.add(dprod)
        cascade.append(CascadeMove(line=d, from_version=dprod, to_version=dt))
    why = reason or "rollback"
    done = ws.store.move_channels(moves, kind="rollback", reason=why, actor=actor, expected=seen, forced=force)
    moved_lines = {m[0] for m in moves}
    apps = [n for n, s in ws.eco.lines.items() if s.tier is Tier.app and s.parent in moved_lines]
    return RollbackOutcome(line=line, from_version=current, to_version=target, reason=why, cascade=cascade,
                           apps_following=apps, moves=done)
