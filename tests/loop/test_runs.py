"""Update runs that fail or get stuck (issue 20, item 6): a run that raises anything is recorded as failed, with its
error, and exits 2 with one paragraph; ``resume`` finishes the other interrupted runs when one of them fails;
``runs list`` shows every run, and ``runs abandon`` gives up on a stuck one, in the ledger.

The world is the plumbing one of tests/conftest.py (an untrained tiny model, 5-step SFT): these tests prove the
bookkeeping, not learning. The failures are real, not mocked: the registry's scratch folder (``.loopgate/work``)
is a file, so training cannot create its run's folder and raises NotADirectoryError — an error no input check
can catch (the data and recipe triggers of issue 20 are refused up front now).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopgate.loop.workspace import Workspace
from loopgate.store.pages import running_lines

Cli = Callable[..., Any]


def _rows(words: list[str]) -> str:
    return "".join(json.dumps({"prompt": f"reverse: {w}\n=>", "completion": w[::-1]}) + "\n" for w in words)


@pytest.fixture
def shipped(workspace: Workspace, tiny_model_dir: Path, cli: Cli) -> Workspace:
    """base@1 registered from the tiny model and released; a reversal suite and three update files on disk."""
    root = workspace.root
    assert cli("register", "base", "--model", tiny_model_dir, workspace=root).code == 0
    assert cli("release", "base@1", workspace=root).code == 0
    (root / "suites").mkdir(exist_ok=True)
    (root / "suites/reversal.jsonl").write_text(
        "".join(json.dumps({"id": w, "prompt": f"reverse: {w}\n=>", "target": w[::-1]}) + "\n"
                for w in ("abc", "dog", "sun")), encoding="utf-8")
    for name, words in {"a": ["abc", "dog"], "b": ["sun", "cat"], "c": ["red", "map"]}.items():
        (root / f"{name}.jsonl").write_text(_rows(words), encoding="utf-8")
    return workspace


def _block_scratch(ws: Workspace) -> None:
    """Make the registry's scratch folder a plain file: a run that trains can no longer create its folder."""
    work = ws.store.home / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.write_text("not a folder\n", encoding="utf-8")


def _killed_update(ws: Workspace, data: Path) -> None:
    """``loopgate update support --data DATA``, SIGKILLed right after its version is registered."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOOPGATE_KILL_AT": "after-register"}
    killed = subprocess.run([sys.executable, "-m", "loopgate", "update", "support", "--data", str(data), "-q",
                             "--workspace", str(ws.root)], capture_output=True, text=True, env=env, timeout=600)
    assert killed.returncode == -9, killed.stderr


def _one_paragraph(res: Any) -> str:
    assert res.code == 2, (res.out, res.err)
    assert "Traceback" not in res.err and res.err.strip().count("\n\n") == 0, res.err
    return " ".join(res.err.split())


def _runs(cli: Cli, ws: Workspace, *status: str) -> list[dict[str, Any]]:
    res = cli("runs", "list", *(("--status", status[0]) if status else ()), "--json", workspace=ws.root)
    assert res.code == 0, res.err
    rows: list[dict[str, Any]] = json.loads(res.out)
    return rows


def test_a_run_that_raises_is_failed_with_its_error_and_exits_2(shipped: Workspace, cli: Cli) -> None:
    ws = shipped
    _block_scratch(ws)
    text = _one_paragraph(cli("update", "support", "--data", ws.root / "a.jsonl", workspace=ws.root))
    [run] = _runs(cli, ws)
    assert run["status"] == "failed" and run["line"] == "support"
    assert run["error"].startswith("NotADirectoryError: ") and "Traceback" in run["traceback"]
    assert f"Run {run['run']} is recorded as failed" in text and "NotADirectoryError" in text
    assert "while training" in text and "nothing it built was released" in text and "runs abandon" in text
    assert running_lines(ws.store) == {}  # neither the run nor its training step looks busy
    assert ws.store.versions("support") == []
    assert any(e.kind == "update.fail" and e.payload["run"] == run["run"] for e in ws.store.ledger())
    # a resume reports it and does not re-run it; the same command, run again, tries it again (and fails again)
    res = cli("resume", "--json", workspace=ws.root)
    assert res.code == 0 and res.json()["finished"] == [], res.err
    assert [(f["run"], f["resumed"]) for f in res.json()["failed"]] == [(run["run"], False)]
    _one_paragraph(cli("update", "support", "--data", ws.root / "a.jsonl", workspace=ws.root))
    assert [r["status"] for r in _runs(cli, ws)] == ["failed"]
    (ws.store.home / "work").unlink()  # the fault mended, the same command succeeds
    res = cli("update", "support", "--data", ws.root / "a.jsonl", "--json", workspace=ws.root)
    assert res.code == 0 and res.json()["released"], (res.out, res.err)
    assert [r["status"] for r in _runs(cli, ws)] == ["done"]


def test_resume_finishes_the_other_runs_when_one_of_them_fails(shipped: Workspace, cli: Cli) -> None:
    ws = shipped
    _killed_update(ws, ws.root / "a.jsonl")
    _killed_update(ws, ws.root / "b.jsonl")
    started = _runs(cli, ws, "started")
    assert sorted(Path(r["data"][0]).name for r in started) == ["a.jsonl", "b.jsonl"]
    broken = next(r["run"] for r in started if r["data"][0].endswith("a.jsonl"))
    # a.jsonl is edited before the resume, so its run trains again, and it cannot: the scratch folder is blocked.
    # b.jsonl's run only has to decide and release the version it registered before it was killed
    (ws.root / "a.jsonl").write_text(_rows(["abc", "dog", "owl"]), encoding="utf-8")
    _block_scratch(ws)

    res = cli("resume", "--json", workspace=ws.root)
    assert res.code == 2, res.err  # the other run finished; the exit code still says one did not
    out = res.json()
    assert [(f["run"], f["resumed"]) for f in out["failed"]] == [(broken, True)]
    assert out["failed"][0]["error"].startswith("NotADirectoryError: ")
    [finished] = out["finished"]
    assert finished["released"] and ws.store.channel("support", "production") == finished["version"]
    by_run = {r["run"]: r for r in _runs(cli, ws)}
    assert by_run[broken]["status"] == "failed"
    assert [r["status"] for k, r in by_run.items() if k != broken] == ["done"]
    assert running_lines(ws.store) == {}
    again = cli("resume", "--json", workspace=ws.root).json()
    assert again["finished"] == [] and [(f["run"], f["resumed"]) for f in again["failed"]] == [(broken, False)]


def test_a_stuck_run_is_abandoned_in_the_ledger_and_resume_skips_it(shipped: Workspace, cli: Cli) -> None:
    ws = shipped
    _killed_update(ws, ws.root / "c.jsonl")
    [stuck] = _runs(cli, ws, "started")
    assert set(running_lines(ws.store)) == {"support"}
    refused = _one_paragraph(cli("runs", "abandon", stuck["run"], "--reason", " ", workspace=ws.root))
    assert "--reason" in refused
    res = cli("runs", "abandon", stuck["run"][:8], "--reason", "data withdrawn", "--as", "ana", "--json",
              workspace=ws.root)
    assert res.code == 0, res.err
    assert res.json()["status"] == "abandoned" and res.json()["reason"] == "data withdrawn"
    entry = next(e for e in ws.store.ledger() if e.kind == "run.abandon")
    assert entry.actor == "ana" and entry.subject == "support"
    assert entry.payload["run"] == stuck["run"] and entry.payload["was"] == "started"
    assert entry.payload["reason"] == "data withdrawn"
    assert ws.store.verify_ledger().ok
    assert _runs(cli, ws, "started") == [] and running_lines(ws.store) == {}
    assert [r["run"] for r in _runs(cli, ws, "abandoned")] == [stuck["run"]]

    res = cli("resume", "--json", workspace=ws.root)
    assert res.code == 0 and res.json() == {"finished": [], "failed": []}, (res.out, res.err)
    assert ws.store.channel("support", "production") is None  # its registered version was never released
    assert "abandoned already" in _one_paragraph(cli("runs", "abandon", stuck["run"], "--reason", "again",
                                                     workspace=ws.root))
    assert "runs list" in _one_paragraph(cli("runs", "abandon", "ffffffff", "--reason", "x", workspace=ws.root))
    assert "--status" in _one_paragraph(cli("runs", "list", "--status", "stuck", workspace=ws.root))
    assert "abandoned" in cli("runs", "list", workspace=ws.root).out


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_out_of_range_exits_2_naming_the_option_before_anything_is_recorded(shipped: Workspace, cli: Cli,
                                                                                   seed: str) -> None:
    text = _one_paragraph(cli("update", "support", "--data", shipped.root / "a.jsonl", "--seed", seed,
                              workspace=shipped.root))
    assert f"--seed {seed}" in text and "2**32" in text
    assert _runs(cli, shipped) == [] and shipped.store.versions("support") == []
