"""Fixtures for the store tests: a registry with three lines and a helper to make small files.

Every test here that opens a registry (through ``store``, ``workspace`` or ``database``) runs twice: on
SQLite and on the session's real PostgreSQL server (tests/pg.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pg import open_database

from loopgate.store import Store

LINES = {"base": ("foundation", None), "support": ("industrial", "base"), "billing": ("application", "support")}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    yield from open_database(request, monkeypatch)


@pytest.fixture
def store(tmp_path: Path, database: str | None) -> Iterator[Store]:
    s = Store(tmp_path / ".loopgate")
    s.sync_lines(LINES)
    yield s
    s.close()


@pytest.fixture
def make_files(tmp_path: Path) -> Callable[[str], dict[str, Path]]:
    """``make_files("v1")`` → {"model.safetensors": ..., "config.json": ...} with content unique to the tag."""
    def make(tag: str) -> dict[str, Path]:
        d = tmp_path / "src" / tag
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.safetensors").write_bytes(f"weights of {tag}".encode() * 64)
        (d / "config.json").write_text(f'{{"tag": "{tag}"}}')
        return {"model.safetensors": d / "model.safetensors", "config.json": d / "config.json"}
    return make
