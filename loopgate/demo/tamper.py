"""The demo's tamper step: copy the registry, edit one ledger entry behind the store's back, and let
``audit verify`` find it — on SQLite and on PostgreSQL alike.

The copy is always a SQLite file: copying a PostgreSQL database needs a second database (``CREATE DATABASE …
TEMPLATE`` refuses while the store is connected) and rights a team's registry user may not have, while a
SQLite copy needs nothing and leaves the real registry untouched. Rows are copied table by table through the
ORM's metadata (what ``sqlite3``'s backup API does for a SQLite source, but from either database); the copy's
schema comes from the same Alembic migrations as every registry's.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, delete, func, select, update

import loopgate.store.db  # noqa: F401 — registers every table on Base.metadata
import loopgate.store.tables_control  # noqa: F401
import loopgate.store.tables_gateway  # noqa: F401
import loopgate.store.tables_team  # noqa: F401
from loopgate.store import Store
from loopgate.store.base import Base
from loopgate.store.db import LedgerRow

FORGER = "mallory"


def copy_registry(store: Store, dest: Path) -> Store:
    """A SQLite copy of ``store``'s registry (every table, every row) in ``dest``, opened as a store."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    # the URL is explicit: LOOPGATE_DATABASE_URL (the source's PostgreSQL) must not pick the copy's database
    copy = Store(dest, url=f"sqlite:///{dest / 'registry.db'}")
    tables = Base.metadata.sorted_tables  # parents before children (foreign keys)
    with store.engine.connect() as src, copy.engine.begin() as dst:
        for table in reversed(tables):  # rows the migrations seeded (the ledger head) make way for the source's
            dst.execute(delete(table))
        for table in tables:
            rows = [_portable(dict(r)) for r in src.execute(select(table)).mappings()]
            if rows:
                dst.execute(table.insert(), rows)
    return copy


def _portable(row: dict[str, Any]) -> dict[str, Any]:
    """Timestamps in UTC: PostgreSQL hands them back in the session's zone, SQLite keeps no zone at all."""
    return {k: v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo else v for k, v in row.items()}


def tamper_copy(store: Store, dest: Path) -> dict[str, Any]:
    """Copy the registry, edit the actor of the middle ledger entry in the copy (a plain SQL UPDATE, as someone
    with database access would), and verify the copy's chain: ``ok`` is false and names the edited entry."""
    copy = copy_registry(store, dest)
    ledger: Table = LedgerRow.__table__  # type: ignore[assignment]
    try:
        with copy.engine.begin() as conn:
            middle = conn.execute(select(func.max(ledger.c.seq))).scalar_one() // 2
            edited = conn.execute(update(ledger).where(ledger.c.seq == middle).values(actor=FORGER)).rowcount
        if edited != 1:  # a demo whose ledger is too short to edit is a bug in the story, not a user error
            raise RuntimeError(f"the tamper step edited {edited} ledger entries (entry {middle}), not one")
        report = copy.verify_ledger()
    finally:
        copy.engine.dispose()
    return {"ok": report.ok, "first_bad_seq": report.first_bad_seq, "problem": report.problem}
