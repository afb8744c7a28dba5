"""Pinned lines: a line an engineer pinned stays on its parent version while the parent moves on; propagation
leaves it alone until it is unpinned (``loopgate pin`` / ``loopgate unpin``).

A pin and its ledger entry (``line.pin``, ``line.unpin``) commit in one transaction, and the replay
(:mod:`loopgate.store.replay`) checks the table against the ledger. Pinning a pinned line, or unpinning a line
that is not pinned, changes nothing and records nothing (a retried command is harmless).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select

from loopgate.errors import NotFoundError
from loopgate.records import utcnow
from loopgate.store import ledger as ledger_mod
from loopgate.store.registry import Store
from loopgate.store.session import aware
from loopgate.store.tables import ChannelRow, LinePinRow, LineRow


class LinePin(BaseModel):
    """A stored pin: who pinned the line, when, why, and what its production served then."""

    line: str
    actor: str
    reason: str
    since: datetime
    production: str | None = None

    @property
    def note(self) -> str:
        """One line for status, plan, reports and propagation outcomes: since when, by whom, how to undo it."""
        return (f"pinned since {self.since:%Y-%m-%d %H:%M} UTC by {self.actor}: {self.reason!r} "
                f"(unpin with `loopgate unpin {self.line}`)")


def _pin(row: LinePinRow) -> LinePin:
    return LinePin(line=row.line, actor=row.actor, reason=row.reason, since=aware(row.created_at),
                   production=row.production)


def pin_line(store: Store, line: str, *, actor: str, reason: str) -> tuple[LinePin, bool]:
    """Pin ``line`` (recorded as ``line.pin``); returns the pin and whether this call made it (False: the line
    was pinned already, and that pin is kept as it was)."""
    with store.db.tx() as s:
        if s.get(LineRow, line) is None:
            raise NotFoundError(f"unknown line '{line}'")
        existing = s.get(LinePinRow, line)
        if existing is not None:
            return _pin(existing), False
        prod = s.get(ChannelRow, (line, "production"))
        row = LinePinRow(line=line, actor=actor, reason=reason, production=prod.version_id if prod else None,
                         created_at=utcnow())
        s.add(row)
        ledger_mod.append(s, actor=actor, kind="line.pin", subject=line,
                          payload={"reason": reason, "production": row.production})
        return _pin(row), True


def unpin_line(store: Store, line: str, *, actor: str, reason: str = "") -> LinePin | None:
    """Unpin ``line`` (recorded as ``line.unpin``); returns the pin removed, or None when it was not pinned."""
    with store.db.tx() as s:
        if s.get(LineRow, line) is None:
            raise NotFoundError(f"unknown line '{line}'")
        row = s.get(LinePinRow, line)
        if row is None:
            return None
        pin = _pin(row)
        s.delete(row)
        ledger_mod.append(s, actor=actor, kind="line.unpin", subject=line,
                          payload={"reason": reason, "pinned_by": pin.actor, "pinned_since": pin.since.isoformat()})
        return pin


def line_pins(store: Store) -> dict[str, LinePin]:
    """Every pinned line, in one query (status, plan and a propagation wave read them all at once)."""
    with store.db.read() as s:
        return {r.line: _pin(r) for r in s.execute(select(LinePinRow).order_by(LinePinRow.line)).scalars()}


def line_pin(store: Store, line: str) -> LinePin | None:
    """The line's pin, or None."""
    with store.db.read() as s:
        row = s.get(LinePinRow, line)
        return _pin(row) if row is not None else None
