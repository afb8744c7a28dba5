"""Fixtures for the store tests: a registry with three lines and a helper to make small files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopgate.store import Store

LINES = {"base": ("foundation", None), "support": ("industrial", "base"), "billing": ("application", "support")}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
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
