"""Bringing a registry database to the newest schema (the Alembic migrations in ``store/migrations``), carrying
over what older Loopgates kept beside it, and the other DDL Loopgate runs (the tuning studies' schema)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from loopgate.store import ledger as ledger_mod
from loopgate.store.session import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(db: Database) -> None:
    """Run the migrations the database lacks (none: no Alembic import, as every command opens the store)."""
    if schema_at_head(db.engine):
        return
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with db.engine.connect() as conn:
        # every CLI call opens the store: skip Alembic's environment when the schema is already at head
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
    with db.writer.begin() as conn:
        # two clients opening a new database at once: the second waits, then finds it migrated
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7240012)")
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def schema_at_head(engine: Engine) -> bool:
    """Whether the database's Alembic revision is the newest migration, read without importing Alembic
    (~0.1 s of every command): each migration file names its ``revision`` and ``down_revision``; anything
    unexpected answers False and :func:`migrate` asks Alembic itself."""
    revisions: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        rev = re.findall(r'^revision\s*=\s*["\']([\w-]+)["\']\s*$', source, re.M)
        down = re.findall(r'^down_revision\s*=\s*(?:None|["\']([\w-]+)["\'])\s*$', source, re.M)
        if len(rev) != 1 or len(down) != 1:
            return False
        revisions[rev[0]] = down[0] or None
    heads = set(revisions) - set(revisions.values())
    if len(heads) != 1:
        return False
    try:
        with engine.connect() as conn:
            current = [r for (r,) in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
    except Exception:  # no table yet (a new database): Alembic creates it
        return False
    return current == list(heads)


def adopt_file_anchor(db: Database, home: Path) -> None:
    """Older Loopgates kept the ledger head in ``ledger.head`` beside the database: carry it over once."""
    anchor = home / "ledger.head"
    if anchor.exists():
        with db.tx() as s:
            ledger_mod.adopt_file_anchor(s, anchor)
        anchor.replace(anchor.with_name("ledger.head.migrated"))


def ensure_schema(url: str, schema: str) -> None:
    """Create a PostgreSQL schema in the database at ``url`` if it is not there (``tune`` keeps its studies in
    one, beside the registry's tables, so Optuna's own ``alembic_version`` does not collide with ours)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise ValueError(f"{schema!r} is not a plain schema name")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    finally:
        engine.dispose()
