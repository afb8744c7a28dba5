"""Bounded reads for the release manager's view (dashboard, CLI): the ledger filtered by kind and actor, the
last move of a channel and the newest decision of many lines' versions at once. Like :mod:`loopgate.store.pages`,
each function issues a fixed number of queries whatever the size of the registry."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select

from loopgate.records import Decision
from loopgate.store import ledger as ledger_mod
from loopgate.store.moves import ChannelMove
from loopgate.store.pages import LedgerPage
from loopgate.store.registry import Store
from loopgate.store.tables import ChannelMoveRow, DecisionRow, LedgerRow

MAX_ACTORS = 500  # the actors a filter form offers; a registry with more still filters by any of them


def ledger_kinds(store: Store) -> list[str]:
    """Every kind of entry the ledger holds, sorted (a few dozen at most: kinds are written by Loopgate)."""
    with store.db.read() as s:
        return sorted(s.execute(select(LedgerRow.kind).distinct()).scalars())


def ledger_actors(store: Store, limit: int = MAX_ACTORS) -> list[str]:
    """Up to ``limit`` actors who wrote ledger entries, sorted."""
    with store.db.read() as s:
        return list(s.execute(select(LedgerRow.actor).distinct().order_by(LedgerRow.actor).limit(limit)).scalars())


def has_actor(store: Store, actor: str) -> bool:
    """Whether ``actor`` wrote any ledger entry (the caller checks the text is storable first)."""
    with store.db.read() as s:
        return s.execute(select(LedgerRow.seq).where(LedgerRow.actor == actor).limit(1)).first() is not None


def filtered_ledger_page(store: Store, offset: int = 0, limit: int = 50, *, kind: str | None = None,
                         actor: str | None = None) -> LedgerPage:
    """``limit`` entries (newest first) from ``offset`` among those of ``kind`` by ``actor`` (None: any);
    ``total`` counts the matching entries."""
    where = []
    if kind is not None:
        where.append(LedgerRow.kind == kind)
    if actor is not None:
        where.append(LedgerRow.actor == actor)
    with store.db.read() as s:
        total = s.execute(select(func.count()).select_from(LedgerRow).where(*where)).scalar_one()
        rows = s.execute(select(LedgerRow).where(*where).order_by(LedgerRow.seq.desc()).offset(offset)
                         .limit(limit)).scalars()
        return LedgerPage(offset=offset, limit=limit, total=total, entries=[ledger_mod.to_entry(r) for r in rows])


def last_moves(store: Store, lines: Iterable[str], channel: str = "production") -> dict[str, ChannelMove]:
    """The newest move of ``channel`` on each of ``lines`` that has one, in one query."""
    wanted = list(lines)
    newest = (select(ChannelMoveRow.line, func.max(ChannelMoveRow.id).label("id"))
              .where(ChannelMoveRow.line.in_(wanted), ChannelMoveRow.channel == channel)
              .group_by(ChannelMoveRow.line).subquery())
    with store.db.read() as s:
        rows = s.execute(select(ChannelMoveRow).join(newest, ChannelMoveRow.id == newest.c.id)).scalars()
        return {r.line: ChannelMove(id=r.id, line=r.line, channel=r.channel, from_version=r.from_version,
                                    to_version=r.to_version, kind=r.kind, reason=r.reason, actor=r.actor,
                                    decision_id=r.decision_id, created_at=r.created_at) for r in rows}


def latest_decisions(store: Store, version_ids: Iterable[str]) -> dict[str, Decision]:
    """The newest decision of each of ``version_ids`` that has one, in one query."""
    wanted = list(version_ids)
    newest = (select(DecisionRow.version_id, func.max(DecisionRow.id).label("id"))
              .where(DecisionRow.version_id.in_(wanted)).group_by(DecisionRow.version_id).subquery())
    with store.db.read() as s:
        rows = s.execute(select(DecisionRow).join(newest, DecisionRow.id == newest.c.id)).scalars()
        return {r.version_id: Decision.model_validate(r.record) for r in rows}
