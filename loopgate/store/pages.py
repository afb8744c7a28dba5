"""Paged, bounded reads for the control plane (REST API, dashboard): each function issues a fixed number of
queries whatever the size of the registry, so a page of a 10,000-line ecosystem costs what a page of a
ten-line one does."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel
from sqlalchemy import func, select

from loopgate.records import LedgerEntry
from loopgate.store import ledger as ledger_mod
from loopgate.store.registry import Store
from loopgate.store.tables import ChannelRow, DecisionRow, LedgerRow, LineRow, VersionRow


class Page(BaseModel):
    """Where a page sits in the whole: ``offset`` and ``limit`` as asked, ``total`` items in all."""

    offset: int
    limit: int
    total: int


class LedgerPage(Page):
    entries: list[LedgerEntry]


class LineSummary(BaseModel):
    """One line of a page: its channels, its latest version and the verdict of its latest decision."""

    name: str
    tier: str
    parent: str | None
    channels: dict[str, str]
    latest: str | None = None
    versions: int = 0
    latest_verdict: str | None = None
    built_on: str | None = None  # the parent version its production was built on


def ledger_page(store: Store, offset: int = 0, limit: int = 50, *, newest_first: bool = True) -> LedgerPage:
    """``limit`` ledger entries from ``offset`` (newest first by default)."""
    with store.db.read() as s:
        total = s.execute(select(func.count()).select_from(LedgerRow)).scalar_one()
        order = LedgerRow.seq.desc() if newest_first else LedgerRow.seq
        rows = s.execute(select(LedgerRow).order_by(order).offset(offset).limit(limit)).scalars()
        return LedgerPage(offset=offset, limit=limit, total=total, entries=[ledger_mod.to_entry(r) for r in rows])


def line_count(store: Store) -> int:
    with store.db.read() as s:
        return int(s.execute(select(func.count()).select_from(LineRow)).scalar_one())


def line_summaries(store: Store, names: Iterable[str]) -> dict[str, LineSummary]:
    """Summaries of the named lines, in four queries (lines, channels, versions, decisions)."""
    wanted = list(names)
    out: dict[str, LineSummary] = {}
    with store.db.read() as s:
        for row in s.execute(select(LineRow).where(LineRow.name.in_(wanted))).scalars():
            out[row.name] = LineSummary(name=row.name, tier=row.tier, parent=row.parent, channels={})
        for ch in s.execute(select(ChannelRow).where(ChannelRow.line.in_(wanted))).scalars():
            out[ch.line].channels[ch.name] = ch.version_id
        counts = s.execute(select(VersionRow.line, func.count(), func.max(VersionRow.number))
                           .where(VersionRow.line.in_(wanted)).group_by(VersionRow.line))
        for line, n, top in counts:
            out[line].versions, out[line].latest = int(n), f"{line}@{top}"
        prod = [x.channels["production"] for x in out.values() if "production" in x.channels]
        latest = [x.latest for x in out.values() if x.latest]
        for vid, parent in s.execute(select(VersionRow.id, VersionRow.parent_version)
                                     .where(VersionRow.id.in_(prod))):
            out[vid.rpartition("@")[0]].built_on = parent
        newest = (select(DecisionRow.version_id, func.max(DecisionRow.id).label("id"))
                  .where(DecisionRow.version_id.in_(latest)).group_by(DecisionRow.version_id).subquery())
        for vid, verdict in s.execute(select(DecisionRow.version_id, DecisionRow.verdict)
                                      .join(newest, DecisionRow.id == newest.c.id)):
            out[vid.rpartition("@")[0]].latest_verdict = verdict
    return out


def children_of(store: Store, version_id: str, limit: int = 50) -> list[tuple[str, str]]:
    """Versions built on ``version_id`` (as parent or adapter base), at most ``limit``: [(id, relation)]."""
    with store.db.read() as s:
        rows = s.execute(select(VersionRow.id, VersionRow.parent_version, VersionRow.base_version)
                         .where((VersionRow.parent_version == version_id) | (VersionRow.base_version == version_id))
                         .order_by(VersionRow.created_at).limit(limit))
        return [(vid, "adapter" if base == version_id else "child") for vid, _, base in rows]


def running_lines(store: Store) -> dict[str, str]:
    """Lines with an update run in progress (started, not finished): {line: step key}."""
    out: dict[str, str] = {}
    for key, result in store.open_steps("started"):
        line = (result or {}).get("line")
        if isinstance(line, str):
            out[line] = key
    return out
