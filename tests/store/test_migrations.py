"""The Alembic migrations and the ORM models describe the same schema (on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from loopgate.store import Store
from loopgate.store.db import Base
from loopgate.store.registry import MIGRATIONS


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
