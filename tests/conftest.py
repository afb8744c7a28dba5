"""Shared fixtures: one untrained tiny model saved once per session, and a fresh workspace per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LOOPGATE_THREADS", "1")

# deliberately smaller than TinyConfig's defaults: these tests prove plumbing, not learning
TINY_DIMS = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 64}

SMALL_SPEC = """\
name: test-eco
suites:
  reversal:
    path: suites/reversal.jsonl
recipes:
  domain-sft:
    method: sft
    steps: 5
lines:
  base:
    tier: foundation
  support:
    tier: industrial
    parent: base
    recipe: domain-sft
    suites: [reversal]
  billing:
    tier: application
    parent: support
  helpdesk:
    tier: app
    parent: support
    app:
      prompt_template: "Q: {input}\\nA:"
"""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny Llama + char tokenizer saved as a normal HF directory (built once per session)."""
    from loopgate.models import TinyConfig, build_tiny_model, save_model, set_threads

    set_threads(1)
    model, tok = build_tiny_model(TinyConfig(seed=0, **TINY_DIMS))
    return save_model(model, tok, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def workspace(tmp_path: Path):  # -> Workspace (imported lazily so collection stays cheap)
    """A freshly initialised workspace holding SMALL_SPEC (lines base → support → billing, app helpdesk)."""
    from loopgate.loop.workspace import Workspace

    ws, _ = Workspace.init(tmp_path / "ws", spec_text=SMALL_SPEC)
    yield ws
    ws.store.close()
