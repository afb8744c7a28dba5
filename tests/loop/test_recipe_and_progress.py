"""A changed recipe is new work (same data, another recipe trains a version; same data and recipe reuses it), and
a redirected ``loopgate update`` prints a plain progress line instead of nothing (#24 items 3 and 8).

The world is the plumbing one of tests/conftest.py (an untrained tiny model, 5-step SFT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopgate.loop.workspace import Workspace

Cli = Callable[..., Any]


@pytest.fixture
def shipped(workspace: Workspace, tiny_model_dir: Path, cli: Cli) -> Workspace:
    """base@1 released; a reversal suite, update data, and a second recipe (``longer-sft``) in the spec."""
    root = workspace.root
    assert cli("register", "base", "--model", tiny_model_dir, workspace=root).code == 0
    assert cli("release", "base@1", workspace=root).code == 0
    (root / "suites").mkdir(exist_ok=True)
    (root / "suites/reversal.jsonl").write_text(
        "".join(json.dumps({"id": w, "prompt": f"reverse: {w}\n=>", "target": w[::-1]}) + "\n"
                for w in ("abc", "dog", "sun")), encoding="utf-8")
    (root / "a.jsonl").write_text("".join(json.dumps({"prompt": f"reverse: {w}\n=>", "completion": w[::-1]}) + "\n"
                                          for w in ("abc", "dog")), encoding="utf-8")
    spec = root / "loopgate.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace(
        "recipes:\n", "recipes:\n  longer-sft:\n    method: sft\n    steps: 6\n", 1), encoding="utf-8")
    return workspace


def test_same_data_other_recipe_trains_same_recipe_reuses(shipped: Workspace, cli: Cli) -> None:
    root = shipped.root
    first = cli("update", "support", "--data", root / "a.jsonl", "--json", "-q", workspace=root)
    assert first.code == 0, first.err
    assert first.json()["version"] == "support@1" and first.json()["released"]
    again = cli("update", "support", "--data", root / "a.jsonl", "--json", "-q", workspace=root)
    assert again.code == 0 and "already released" in again.json()["note"]  # same data, same recipe: reused
    other = cli("update", "support", "--data", root / "a.jsonl", "--recipe", "longer-sft", "--json", "-q",
                workspace=root)
    assert other.code in (0, 3), other.err
    assert other.json()["version"] == "support@2" and not other.json()["note"], other.out
    v = Workspace.open(root).store.version("support@2")
    assert v.recipe is not None and v.recipe["steps"] == 6


def test_redirected_update_prints_plain_progress_lines(shipped: Workspace) -> None:
    root = shipped.root
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOOPGATE_PROGRESS_EVERY": "0"}
    proc = subprocess.run([sys.executable, "-m", "loopgate", "update", "support", "--data", str(root / "a.jsonl"),
                           "--workspace", str(root)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    steps = [ln for ln in lines if ln.startswith("sft: step ")]
    assert [ln.split()[2] for ln in steps] == [f"{i}/5" for i in range(1, 6)], proc.stderr  # every step (every 0 s)
    assert "(100 %)" in steps[-1] and " loss " in steps[-1]
    assert any(ln.startswith("evaluating: example ") for ln in lines), proc.stderr
    # the default interval (10 s) on a run of a few seconds: only the closing line of each bar
    env["LOOPGATE_PROGRESS_EVERY"] = ""
    quiet = subprocess.run([sys.executable, "-m", "loopgate", "update", "support", "--data", str(root / "a.jsonl"),
                            "--recipe", "longer-sft", "--workspace", str(root)], capture_output=True, text=True,
                           env=env, timeout=600)
    got = [ln.split()[2] for ln in quiet.stderr.splitlines() if ln.startswith("sft: step ")]
    assert got[-1] == "6/6" and len(got) < 6, quiet.stderr  # not a line a step: at most one every 10 s
