"""Concurrency tests: every test here runs on SQLite and on the session's real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pg import open_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    yield from open_database(request, monkeypatch)
