"""Registering a version of another architecture than its line's warns, and ``plan`` then leaves out the transfer
strategies that move weights between parents (#24 item 6)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import GPT2Config, GPT2LMHeadModel

from loopgate.loop.workspace import Workspace
from loopgate.models import save_model
from loopgate.models.tiny import char_tokenizer

Cli = Callable[..., Any]


def test_other_architecture_warns_and_plan_drops_weight_moving_strategies(
        workspace: Workspace, tiny_model_dir: Path, cli: Cli, tmp_path: Path) -> None:
    root = workspace.root
    (root / "suites").mkdir(exist_ok=True)
    (root / "suites/reversal.jsonl").write_text(
        "".join(json.dumps({"id": w, "prompt": f"reverse: {w}\n=>", "target": w[::-1]}) + "\n"
                for w in ("abc", "dog", "sun")), encoding="utf-8")
    first = cli("register", "base", "--model", tiny_model_dir, "--json", workspace=root)
    assert first.code == 0 and first.json()["warnings"] == []
    assert cli("release", "base@1", "-q", workspace=root).code == 0
    assert cli("register", "support", "--model", tiny_model_dir, workspace=root).code == 0
    assert cli("release", "support@1", "-q", workspace=root).code == 0
    same = cli("plan", "base@1", "--json", workspace=root).json()["wave"]
    assert "diff_vector" in next(w for w in same if w["line"] == "support")["strategies"]

    tok = char_tokenizer()
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    other = save_model(gpt2, tok, tmp_path / "gpt2")
    reg = cli("register", "base", "--model", other, "--json", workspace=root)
    assert reg.code == 0, reg.err
    assert "warning:" in reg.err and "'gpt2'" in reg.err and "base@1" in reg.err
    assert reg.json()["warnings"] and "model_type" in reg.json()["warnings"][0]
    wave = cli("plan", "base@2", "--json", workspace=root).json()["wave"]
    support = next(w for w in wave if w["line"] == "support")
    assert support["strategies"] == ["rerun", "distill"], support
