"""A SQLite copy of a registry, and an edit made behind the store's back in it — what the demo's tamper step
shows ``audit verify`` finding, on SQLite and PostgreSQL sources alike.

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

from loopgate.store.registry import Store
from loopgate.store.tables import Base, LedgerRow


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


def forge_middle_entry(store: Store, actor: str) -> tuple[int, int]:
    """Set the actor of the middle ledger entry with a plain SQL UPDATE, as someone with database access would
    (never the store's own way of writing: for the demo's copy only). Returns (its seq, rows edited)."""
    ledger: Table = LedgerRow.__table__  # type: ignore[assignment]
    with store.engine.begin() as conn:
        middle = conn.execute(select(func.max(ledger.c.seq))).scalar_one() // 2
        edited = conn.execute(update(ledger).where(ledger.c.seq == middle).values(actor=actor)).rowcount
    return middle, edited
