"""The unit of work every repository of the registry shares: one engine, one write transaction (with the
ledger's lock taken first), plain reads and snapshot reads.

This is the only place a registry session is opened; the repositories (``versions.py``, ``channels.py``,
``gateway.py``, ``tokens.py``…) run their queries inside what :class:`Database` hands them.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from loopgate.store import ledger as ledger_mod
from loopgate.store.artifacts import ArtifactStore


class Database:
    """A registry database: SQLite (WAL, writers queue on ``BEGIN IMMEDIATE``) or PostgreSQL."""

    def __init__(self, url: str, ledger_key: str | None) -> None:
        self.url = url
        self.ledger_key = ledger_key
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        # writes go through an engine flagged as the writer: SQLite takes its write lock when the
        # transaction begins (BEGIN IMMEDIATE), so two writers queue instead of failing half way
        self.writer = self.engine.execution_options(loopgate_write=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        # a snapshot for reads that must see one moment (the ledger walk against its head)
        self._snapshot = (self.engine.execution_options(isolation_level="REPEATABLE READ")
                          if self.engine.dialect.name == "postgresql" else self.engine)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One write transaction; writers are serialised (the ledger head's row lock on PostgreSQL, the write
        lock on SQLite), so what a write reads inside it is what it commits against."""
        with self._write_sessions() as s, s.begin():
            s.info["ledger_key"] = self.ledger_key  # every ledger_mod.append in it signs (store/gateway.py too)
            ledger_mod.lock_head(s)  # first, always: one lock order for every writer, so no deadlocks
            yield s
            s.flush()
            _kill_point("store.before-commit")

    def read(self) -> Session:
        """A session for reads (``with db.read() as s:``)."""
        return self.sessions()

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read of one moment (REPEATABLE READ on PostgreSQL; a SQLite read transaction is one already)."""
        with self.sessions(bind=self._snapshot) as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()


def aware(t: datetime) -> datetime:
    """SQLite hands timestamps back without their zone (they are stored in UTC)."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the driver's own implicit BEGIN off: _sqlite_begin emits ours
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    """Writers take SQLite's write lock up front (waiting up to busy_timeout); readers read a snapshot. A
    deferred writer that read first would fail with 'database is locked' when it tries to write."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("loopgate_write") else "BEGIN")


def _kill_point(name: str) -> None:
    """``LOOPGATE_KILL_AT=store.before-commit`` kills the process inside a write transaction, after its
    rows are flushed and before it commits (the crash tests; the loop's own kill points are loop/faults.py)."""
    if os.environ.get("LOOPGATE_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Repository:
    """What every repository of the registry works on: the database, the artifact store and the home folder.
    :class:`~loopgate.store.Store` composes the repositories (one per entity) over one of each."""

    def __init__(self, db: Database, artifacts: ArtifactStore, home: Path) -> None:
        self.db = db
        self.artifacts = artifacts
        self.home = home
