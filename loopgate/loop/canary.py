"""The canary verbs: which version answers a request (traffic split, sticky per user, shadow), and the canary
analysis that promotes a canary or rolls it back.

With ``release.canary`` on, a release moves only the line's ``canary`` channel. The gateway then sends a
share of the line's traffic (``release.canary_weight``) to the canary — the same user always to the same
version — or, with ``release.shadow``, lets the canary answer a copy of every production request whose answer
is logged and never returned. :func:`analyse` compares the canary with production on that traffic
(:mod:`loopgate.gates.canary`) and acts on the verdict: ``pass`` moves production to the canary (when the
policy says so, and only for a canary that holds a passing release decision), ``fail`` moves the canary back
to production, ``inconclusive`` keeps watching. Every measurement is a ``canary.check`` ledger entry with its
evidence, committed in one transaction with the channel move it makes.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime

from pydantic import BaseModel

from loopgate.errors import LoopgateError
from loopgate.gates.canary import Arm, CanaryAnalysis
from loopgate.gates.canary import analyse as analyse_arms
from loopgate.loop.workspace import Workspace, current_user
from loopgate.records import Verdict
from loopgate.spec import Tier
from loopgate.store import ChannelMove
from loopgate.store import gateway as gw
from loopgate.store.gateway import CanaryCheck

# one analysis at a time in a process: two concurrent looks at the same samples must not both count a failure
# or both move a channel (the gateway analyses from its log writer and from feedback requests)
_ANALYSIS_LOCK = threading.Lock()


class LineState(BaseModel):
    """A model line's channels as the gateway routes them."""

    line: str
    production: str | None
    canary: str | None
    active: bool  # a canary that differs from production is live
    weight: float
    shadow: bool
    since: datetime | None  # when the live canary went live


class CanaryStatus(BaseModel):
    """``loopgate canary status``: the live canary (if any), a fresh analysis, and the recorded checks."""

    line: str
    state: LineState
    analysis: CanaryAnalysis | None = None
    outcome: str = "none"  # none | watching | promoted | rolled_back | passed
    checks: list[CanaryCheck] = []
    moves: list[ChannelMove] = []
    note: str = ""


def model_line(ws: Workspace, line: str) -> str:
    spec = ws.eco.line(line)
    if spec.tier is Tier.app:
        raise LoopgateError(f"'{line}' is an app: its canary is its model line's, '{spec.parent}'")
    return line


def line_state(ws: Workspace, line: str) -> LineState:
    """The line's production and canary versions and whether a canary is live."""
    channels = ws.store.channels(line)
    policy = ws.eco.policy_for(line).release
    prod, canary = channels["production"], channels["canary"]
    active = canary is not None and canary != prod and prod is not None
    since = None
    if active:
        moves = [m for m in ws.store.channel_history(line, "canary") if m.to_version == canary]
        since = moves[-1].created_at if moves else None
    return LineState(line=line, production=prod, canary=canary, active=active, weight=policy.canary_weight,
                     shadow=policy.shadow, since=since)


def sticky_share(line: str, version: str, user: str, key_id: int | None = None) -> float:
    """Where a user of an API key falls in [0, 1) for a line's canary: the same key and user, the same side, for
    this canary.

    The key is part of the hash so that each key's users are split on their own: a ``user`` value means nothing
    across keys, and one key cannot steer where another key's users land. Hiding the split would not stop a
    client from choosing its arm — every answer names its version and channel, so a client can always send
    ``user`` values until one lands on the canary, and rate only those. What stops a key from deciding a canary is
    on the feedback side: one rating per answer, a feedback rate limit per key, and at most
    ``GatewaySettings.feedback_per_key`` counted ratings per key and version (``store.gateway.add_feedback``)."""
    subject = user if key_id is None else f"key {key_id}\0{user}"
    digest = hashlib.sha256(f"{line}\0{version}\0{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(state: LineState, user: str, key_id: int | None = None) -> tuple[str, str, str | None]:
    """(version, channel, shadow version or None) that answers ``user`` of API key ``key_id`` on the line's
    production traffic."""
    if state.production is None:
        raise LoopgateError(f"line '{state.line}' has no production version to serve; release one first")
    if not state.active or state.canary is None:
        return state.production, "production", None
    if state.shadow:
        return state.production, "production", state.canary
    if sticky_share(state.line, state.canary, user, key_id) < state.weight:
        return state.canary, "canary", None
    return state.production, "production", None


def _arms(ws: Workspace, state: LineState, use_feedback: bool) -> tuple[Arm, Arm]:
    assert state.canary is not None and state.production is not None

    def arm(version: str) -> Arm:
        reqs = gw.requests(ws.store, version, since=state.since)
        # each answer's latest rating, and only those within their key's share (store.gateway.add_feedback)
        scores = ([f.score for f in gw.feedback(ws.store, version, since=state.since, counted_only=True)]
                  if use_feedback else [])
        return Arm(version=version, errors=[not r.ok for r in reqs],
                   latencies_ms=[r.latency_ms for r in reqs if r.ok], scores=scores)

    return arm(state.canary), arm(state.production)


def _sizes(a: CanaryAnalysis) -> list[int]:
    return [n for m in a.metrics for n in (m.canary_n, m.production_n)]


def status(ws: Workspace, line: str) -> CanaryStatus:
    """The live canary and a fresh look at its analysis (nothing recorded, nothing moved)."""
    line = model_line(ws, line)
    state = line_state(ws, line)
    checks = gw.canary_checks(ws.store, line)
    if not state.active:
        last = checks[-1].outcome if checks else "none"
        return CanaryStatus(line=line, state=state, outcome=last if last != "watching" else "none", checks=checks,
                            note="no live canary: the canary channel is empty or equals production")
    assert state.canary is not None
    mine = [c for c in checks if c.canary_version == state.canary]
    policy = ws.eco.policy_for(line)
    canary, production = _arms(ws, state, use_feedback=not state.shadow)
    analysis = analyse_arms(canary, production, policy.canary,
                            prior_failures=mine[-1].consecutive_failures if mine else 0, use_feedback=not state.shadow)
    return CanaryStatus(line=line, state=state, analysis=analysis, outcome="watching", checks=checks)


def analyse(ws: Workspace, line: str, *, actor: str | None = None, progress: bool = False) -> CanaryStatus:
    """One canary measurement on the traffic so far, recorded, and acted on (promote / roll back / watch).

    A look at the same samples as the previous recorded measurement is not a new measurement: it is not
    recorded and does not count towards the consecutive-failure limit."""
    actor = actor or current_user()
    with _ANALYSIS_LOCK:
        return _analyse(ws, line, actor=actor, progress=progress)


def _analyse(ws: Workspace, line: str, *, actor: str, progress: bool) -> CanaryStatus:
    current = status(ws, line)
    if current.analysis is None:
        return current
    state, analysis = current.state, current.analysis
    assert state.canary is not None and state.production is not None
    mine = [c for c in current.checks if c.canary_version == state.canary]
    if mine and mine[-1].evidence.get("sizes") == _sizes(analysis):
        current.analysis = CanaryAnalysis.model_validate(mine[-1].evidence["analysis"])
        return current
    policy = ws.eco.policy_for(line).canary
    moves: list[tuple[str, str, str, str, int | None]] = []
    outcome, note = "watching", ""
    if analysis.verdict is Verdict.failed and policy.auto_rollback:
        moves.append((line, "canary", state.production, "rollback", None))
        outcome = "rolled_back"
    elif analysis.verdict is Verdict.passed:
        passing = [d for d in ws.store.decisions(state.canary) if d.verdict is Verdict.passed]
        if policy.auto_promote and passing:
            moves.append((line, "production", state.canary, "promote", passing[-1].id))
            outcome = "promoted"
        else:
            outcome = "passed"
            note = (f"{state.canary} passed its canary analysis; promote it with `loopgate promote {state.canary}`"
                    if passing else f"{state.canary} passed its canary analysis but holds no passing release "
                    "decision; gate it first")
    evidence = {"analysis": analysis.evidence(), "sizes": _sizes(analysis), "since": str(state.since)}
    reason = f"canary analysis: {analysis.summary}"
    check, done = gw.record_canary_check(
        ws.store, line=line, canary_version=state.canary, production_version=state.production,
        verdict=analysis.measurement.value, outcome=outcome, consecutive_failures=analysis.consecutive_failures,
        evidence=evidence, moves=moves, reason=reason, actor=actor)
    if check is None:  # another process measured or concluded this canary first: report what it recorded
        return status(ws, line)
    out = CanaryStatus(line=line, state=line_state(ws, line), analysis=analysis, outcome=outcome,
                       checks=current.checks + [check], moves=done, note=note)
    if outcome == "promoted":
        from loopgate.loop.propagation import propagate_from  # the wave needs the training stack; a look does not

        propagate_from(ws, state.canary, actor=actor, progress=progress)
    return out
