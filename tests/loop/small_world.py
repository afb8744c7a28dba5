"""A small world for the per-module tests of ``loop/``: the conftest's SMALL_SPEC workspace (base → support →
billing, app helpdesk) with the untrained tiny model registered as ``base@1`` (no training, seconds)."""

from __future__ import annotations

from pathlib import Path

from loopgate.loop.versions import register_model
from loopgate.loop.workspace import Workspace


def with_base(ws: Workspace, model_dir: Path, *, actor: str = "alice") -> str:
    """Register the tiny model as the next version of ``base``; its id."""
    return register_model(ws, "base", model_dir, actor=actor).id
