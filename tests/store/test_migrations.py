"""The Alembic migrations and the ORM models describe the same schema (on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from pg import open_database
from sqlalchemy import inspect

from loopgate.store import Store
from loopgate.store.db import Base
from loopgate.store.registry import MIGRATIONS


@pytest.fixture(params=["sqlite", "postgresql-empty"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """Migrations start from an empty database (the other store tests get PostgreSQL's migrated template)."""
    yield from open_database(request, monkeypatch)


def _head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def test_migrated_database_matches_orm_metadata(tmp_path: Path, database: str | None) -> None:
    store = Store(tmp_path / "home")
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []
        assert ctx.get_current_revision() == _head()
    assert set(inspect(store.engine).get_table_names()) >= set(Base.metadata.tables)
    store.close()


def test_migrating_twice_is_a_no_op(tmp_path: Path, database: str | None) -> None:
    Store(tmp_path / "home").close()
    store = Store(tmp_path / "home")  # opening again runs upgrade(head) on an up-to-date database
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head()
    store.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()


def test_a_registry_from_before_0002_keeps_its_ledger_and_gets_its_head(tmp_path: Path, database: str | None) -> None:
    """Migration 0002 on a registry with history: the head row starts at the last entry, old entries stay
    valid (unsigned), and the old file anchor is carried over."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from loopgate.store.ledger import GENESIS, entry_hash

    home = tmp_path / "home"
    home.mkdir()
    engine = create_engine(database or f"sqlite:///{home / 'registry.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    prev = GENESIS
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        for seq in (1, 2, 3):  # three entries written the old way
            h = entry_hash(seq, "2026-01-01T00:00:00", "ana", "note", "base", "{}", prev)
            conn.execute(text("INSERT INTO ledger VALUES (:s, '2026-01-01T00:00:00', 'ana', 'note', 'base', '{}', "
                              ":p, :h)"), {"s": seq, "p": prev, "h": h})
            prev = h
    engine.dispose()
    (home / "ledger.head").write_text(f'{{"seq": 3, "hash": "{prev}"}}')
    store = Store(home)
    rep = store.verify_ledger()
    assert rep.ok and rep.entries == 3 and rep.head_hash == prev
    with store.engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT seq, hash FROM ledger_head")).one()) == (3, prev)
        assert MigrationContext.configure(conn).get_current_revision() == _head()
    assert (home / "ledger.head.migrated").exists() and not (home / "ledger.head").exists()
    store.record("note", "base", {"after": "the upgrade"})
    assert store.verify_ledger().ok and store.verify_ledger().entries == 4
    store.close()
