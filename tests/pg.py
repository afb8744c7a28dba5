"""A real PostgreSQL server for the test session: ``initdb`` + ``pg_ctl`` on a temporary folder, run as an
unprivileged system user (initdb refuses root), listening only on a unix socket inside that folder.

One server per session; each test gets its own database (``CREATE DATABASE``, dropped afterwards). A
missing ``initdb`` is an error, never a skip: ``make setup-test`` installs Debian's ``postgresql``.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_USER = "postgres"  # Debian's package creates it; any unprivileged user works
TEMPLATE = "loopgate_at_head"
BIN_DIRS = ["/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"]

# one parametrization for "the same test on both databases" (the `database` fixture in tests/conftest.py)
both_databases = pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)


def _tool(name: str) -> str:
    for d in BIN_DIRS:
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed; run 'make setup-test' (it installs Debian's "
                           "postgresql package) or 'apt-get install postgresql'")
    return found


class PostgresServer:
    """A throw-away cluster: fsync off (a crashed test server is simply discarded), unix socket only."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="loopgate-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root  # short path: unix socket names are limited to ~100 bytes
        self._names = itertools.count(1)
        self._as_root = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        cmd = ["runuser", "-u", PG_USER, "--", *argv] if self._as_root else list(argv)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def start(self) -> None:
        if self._as_root:
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(_tool("initdb"), "-D", str(self.data), "-A", "trust", "-U", PG_USER, "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        opts = (f"-c listen_addresses='' -k {self.socket_dir} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB")
        self._run(_tool("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", opts,
                  "-w", "-t", "60", "start")
        # one database migrated to head, copied for each test (CREATE DATABASE ... TEMPLATE): Alembic runs once
        from loopgate.store import Store

        self._admin(f"CREATE DATABASE {TEMPLATE}")
        Store(self.root / "template-home", url=self.url(TEMPLATE)).close()

    def stop(self) -> None:
        try:
            self._run(_tool("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@/{database}?host={self.socket_dir}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(dbname="postgres", user=PG_USER, host=str(self.socket_dir), autocommit=True) as c:
            c.execute(sql)

    @contextmanager
    def database(self, migrated: bool = True) -> Iterator[str]:
        """A fresh database for one test, its schema at head (or empty: ``migrated=False``); its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if migrated else 'template0'} STRATEGY FILE_COPY")
        try:
            yield self.url(name)
        finally:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def open_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The body of the ``database`` fixtures: ``request.param`` (default ``sqlite``) picks the database;
    ``postgresql`` starts at the current schema, ``postgresql-empty`` (for the migration tests) with nothing."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield None
        return
    assert kind in ("postgresql", "postgresql-empty"), kind
    server: PostgresServer = request.getfixturevalue("pg_server")
    with server.database(migrated=kind == "postgresql") as url:
        monkeypatch.setenv("LOOPGATE_DATABASE_URL", url)
        yield url
