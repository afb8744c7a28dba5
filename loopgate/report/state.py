"""A version's and a line's state from production's point of view — the one answer the dashboard and the CLI
give to "what happened to this version?": in production, canary, staging, rolled back, blocked by GATE, held
(inconclusive: awaiting evidence or approval), superseded, passed but not released, or a candidate not
decided yet; and for a line, whether what production serves is healthy, was rolled back, or is pinned to an
older parent version.

:func:`classify` is the rule, a pure function of the facts; :func:`version_state` reads those facts for one
version from the store, :func:`line_states` for a page of lines in a fixed number of queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel

from loopgate.records import Decision, Verdict
from loopgate.store import ChannelMove, Store
from loopgate.store.pages import LineSummary, line_summaries
from loopgate.store.pins import line_pin, line_pins
from loopgate.store.release_reads import last_moves, latest_decisions

StateKind = Literal["production", "canary", "staging", "rolled back", "blocked", "held", "superseded", "passed",
                    "candidate"]
# a kind's mark on a page: shipped (green), blocked (red), held (yellow), rolled back (orange), other (grey)
MARKS: dict[str, str] = {"production": "shipped", "canary": "shipped", "staging": "shipped", "superseded": "shipped",
                         "rolled back": "rolledback", "blocked": "blocked", "held": "held", "passed": "other",
                         "candidate": "other"}


class VersionState(BaseModel):
    """Where a version stands, in words (``label``) and as a kind a page colours (``mark``)."""

    version: str
    kind: StateKind
    label: str
    gates: list[str] = []  # the gates that block it (blocked) or hold it (held)
    verdict: str | None = None  # its newest decision's verdict
    pinned: str = ""  # in production on an older parent version than the parent ships

    @property
    def mark(self) -> str:
        return MARKS[self.kind]


class LineState(BaseModel):
    """A line from production's point of view, and its newest candidate when production does not serve it."""

    line: str
    production: str | None
    health: Literal["healthy", "rolled back", "none"]
    note: str = ""  # how production came to serve what it serves when that was a rollback
    pinned: str = ""
    candidate: VersionState | None = None


def pinned_note(built_on: str | None, parent_production: str | None) -> str:
    """Why a production version is not on its parent's production version (empty when it is)."""
    if built_on is None or parent_production is None or built_on == parent_production:
        return ""
    return f"pinned to {built_on} (parent ships {parent_production})"


def blocking_gates(decision: Decision) -> list[str]:
    """The gates that stop a decision: blocking gates that failed (else inconclusive ones), not overridden."""
    for verdict in (Verdict.failed, Verdict.inconclusive):
        names = [g.name for g in decision.gates if g.verdict is verdict and g.blocking and not g.overridden_by]
        if names:
            return names
    return []


def classify(version_id: str, channels: Mapping[str, str | None], moves: list[ChannelMove],
             decision: Decision | None, pinned: str = "") -> VersionState:
    """The state of ``version_id`` given its line's channels now, the channel moves known (oldest first) and
    its newest decision. Channels win over history, history over the decision: a version production serves is
    in production even if a later decision failed; one rolled back out of a channel says so."""
    verdict = decision.verdict.value if decision else None
    here = [c for c, v in channels.items() if v == version_id]
    if "production" in here:
        return VersionState(version=version_id, kind="production", verdict=verdict, pinned=pinned,
                            label="in production" + (f", {pinned}" if pinned else ""))
    # how it last left a channel: a rollback marks it, a later release past it does not
    exits = [m for m in moves if m.from_version == version_id and m.channel not in here]
    if exits and exits[-1].kind == "rollback":
        m = exits[-1]
        return VersionState(version=version_id, kind="rolled back", verdict=verdict,
                            label=f"rolled back ({m.channel} → {m.to_version} by {m.actor})")
    for channel in ("canary", "staging"):
        if channel in here:
            return VersionState(version=version_id, kind=channel, verdict=verdict,  # type: ignore[arg-type]
                                label=f"in {channel}")
    if decision is not None and decision.verdict is not Verdict.passed:
        gates = blocking_gates(decision)
        if decision.verdict is Verdict.failed:
            return VersionState(version=version_id, kind="blocked", verdict=verdict, gates=gates,
                                label="blocked by " + (", ".join(gates) or "its decision"))
        label = ("awaiting approval" if gates == ["approval"]
                 else "held: " + (", ".join(gates) or "its decision") + " inconclusive")
        return VersionState(version=version_id, kind="held", verdict=verdict, gates=gates, label=label)
    replaced = [m for m in moves if m.channel == "production" and m.from_version == version_id]
    if replaced or any(m.channel == "production" and m.to_version == version_id for m in moves):
        by = replaced[-1].to_version if replaced else channels.get("production")
        return VersionState(version=version_id, kind="superseded", verdict=verdict,
                            label=f"shipped, superseded by {by}" if by else "shipped, superseded")
    if decision is not None:
        return VersionState(version=version_id, kind="passed", verdict=verdict, label="passed, not released")
    return VersionState(version=version_id, kind="candidate", label="candidate, not decided")


def version_state(store: Store, version_id: str) -> VersionState:
    """The state of one version from production's point of view (reads its line's channels and moves, its
    newest decision and, when production serves it, its parent's production)."""
    v = store.version(version_id)
    channels = store.channels(v.line)
    decisions = store.decisions(version_id)
    pinned = ""
    if channels.get("production") == version_id and v.parent_version:
        pinned = pinned_note(v.parent_version, store.channel(v.parent_version.rpartition("@")[0]))
    stored = line_pin(store, v.line) if channels.get("production") == version_id else None
    pinned = stored.note if stored is not None else pinned  # a pin someone made (loopgate pin) says who and why
    return classify(version_id, channels, store.channel_history(v.line), decisions[-1] if decisions else None,
                    pinned)


def line_states(store: Store, lines: Iterable[str],
                summaries: dict[str, LineSummary] | None = None) -> dict[str, LineState]:
    """Each named model line's state (apps have none of their own), in a fixed number of queries; pass the
    lines' ``summaries`` when the caller read them already."""
    summaries = summaries if summaries is not None else line_summaries(store, lines)
    parents = {s.parent for s in summaries.values() if s.parent} - set(summaries)
    parent_prod = {n: s.channels.get("production") for n, s in line_summaries(store, parents).items()}
    parent_prod.update({n: s.channels.get("production") for n, s in summaries.items()})
    moves = last_moves(store, summaries)
    pins = line_pins(store)
    latest = [s.latest for s in summaries.values() if s.latest and s.latest != s.channels.get("production")]
    decisions = latest_decisions(store, latest)
    out: dict[str, LineState] = {}
    for name, s in summaries.items():
        prod = s.channels.get("production")
        last = moves.get(name)
        rolled = last is not None and last.kind == "rollback" and prod is not None
        state = LineState(line=name, production=prod, health="none" if prod is None else
                          "rolled back" if rolled else "healthy",
                          pinned=pins[name].note if name in pins else
                          pinned_note(s.built_on, parent_prod.get(s.parent or "")) if s.parent else "")
        if rolled and last is not None:
            state.note = f"rolled back from {last.from_version} by {last.actor}" + (
                f": {last.reason}" if last.reason else "")
        if s.latest and s.latest != prod:
            state.candidate = classify(s.latest, s.channels, [last] if last else [], decisions.get(s.latest))
        out[name] = state
    return out
