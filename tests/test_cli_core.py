"""The core CLI: every command's --json output parsed, exit codes (0 ok, 1 audit failure, 2 bad input),
one-paragraph errors without tracebacks, and --workspace / LOOPGATE_WORKSPACE."""

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
from decided import release

LOOPGATE = shutil.which("loopgate", path=str(Path(sys.executable).parent)) or "loopgate"
Cli = Callable[..., Any]


def loopgate(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    return subprocess.run([LOOPGATE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


@pytest.fixture
def released(workspace: Any, tiny_model_dir: Path, cli: Cli) -> Any:
    """base@1 → base@2 in production (base@1 the rollback target); support@1 built on base@2."""
    for _ in range(2):
        assert cli("register", "base", "--model", tiny_model_dir, "--as", "ana", workspace=workspace.root).code == 0
    release(workspace.store, [("base", "production", "base@1")], kind="release", reason="first", actor="ana")
    release(workspace.store, [("base", "production", "base@2")], kind="release", reason="v2", actor="bo")
    assert cli("register", "support", "--model", tiny_model_dir, workspace=workspace.root).code == 0
    return workspace


def test_init_creates_and_keeps_the_spec(tmp_path: Path, cli: Cli) -> None:
    res = cli("init", tmp_path / "new", "--json")
    assert res.code == 0
    assert res.json() == {"workspace": str((tmp_path / "new").resolve()), "spec_created": True, "lines": ["base"]}
    assert (tmp_path / "new" / "loopgate.yaml").exists() and (tmp_path / "new" / ".loopgate" / "registry.db").exists()
    again = cli("init", "--json", workspace=tmp_path / "new")
    assert again.code == 0 and again.json()["spec_created"] is False
    plain = cli("init", tmp_path / "new")
    assert plain.code == 0 and "kept the existing loopgate.yaml" in " ".join(plain.out.split())


def test_status_json(released: Any, cli: Cli) -> None:
    res = cli("status", "--json", workspace=released.root)
    assert res.code == 0
    data = res.json()
    assert data["ecosystem"] == "test-eco"
    rows = {r["line"]: r for r in data["lines"]}
    assert [r["line"] for r in data["lines"]] == ["base", "support", "billing", "helpdesk"]  # tier order
    assert rows["base"]["channels"]["production"] == "base@2" and rows["base"]["latest"] == "base@2"
    assert rows["support"]["latest"] == "support@1" and rows["support"]["channels"]["production"] is None
    assert rows["helpdesk"]["tier"] == "app" and "support/production" in rows["helpdesk"]["note"]
    assert cli("status", workspace=released.root).code == 0


def test_versions_json(released: Any, cli: Cli) -> None:
    res = cli("versions", "base", "--json", workspace=released.root)
    assert res.code == 0
    vs = res.json()
    assert [v["id"] for v in vs] == ["base@1", "base@2"]
    assert vs[1]["channels"] == ["production"] and vs[0]["channels"] == []
    assert vs[0]["created_by"] == "ana" and vs[0]["files"]["config.json"]
    assert cli("versions", "billing", "--json", workspace=released.root).json() == []


def test_lineage_json(released: Any, cli: Cli) -> None:
    up = cli("lineage", "support@1", "--json", workspace=released.root)
    assert up.code == 0
    assert up.json() == {"version": "support@1", "ancestors": [{"version": "base@2", "relation": "parent"}],
                         "descendants": []}
    down = cli("lineage", "base@2", "--json", workspace=released.root).json()
    assert down["ancestors"] == [] and down["descendants"] == [
        {"version": "support@1", "relation": "child", "of": "base@2"}]
    assert cli("lineage", "base@1", "--json", workspace=released.root).json()["descendants"] == []
    assert "support@1" in cli("lineage", "base@2", workspace=released.root).out


def test_channels_json_with_history(released: Any, cli: Cli) -> None:
    res = cli("channels", "base", "--json", workspace=released.root)
    assert res.code == 0
    data = res.json()
    assert data["channels"] == {"staging": None, "canary": None, "production": "base@2"}
    assert data["rollback_target"] == "base@1"
    assert [(m["from_version"], m["to_version"], m["actor"], m["reason"]) for m in data["history"]] == [
        (None, "base@1", "ana", "first"), ("base@1", "base@2", "bo", "v2")]
    assert "base@2" in cli("channels", "base", workspace=released.root).out


def test_gc_json(released: Any, cli: Cli) -> None:
    dry = cli("gc", "--keep-latest", "0", "--dry-run", "--json", workspace=released.root)
    assert dry.code == 0
    assert dry.json()["dry_run"] is True and dry.json()["versions"] == []  # identical files: all shared
    # base@1 and base@2 are the same model, so add a distinct unprotected version to collect
    src = released.root / "other"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"other weights")
    released.store.add_version("billing", {"model.safetensors": src / "model.safetensors"})
    released.store.add_version("billing", {"model.safetensors": released.root / "loopgate.yaml"})
    res = cli("gc", "--keep-latest", "1", "--json", workspace=released.root)
    assert res.code == 0
    data = res.json()
    assert data["versions"] == ["billing@1"] and data["deleted_blobs"] == 1 and data["freed_bytes"] == 13
    assert {"base@1", "base@2", "billing@2"} <= set(data["kept_versions"])
    # the plain output says what this run did: nothing is left to collect right after the JSON run ...
    again = cli("gc", workspace=released.root)
    assert again.code == 0 and "deleted 0 blobs (0.0 MB) of 0 versions" in " ".join(again.out.split())
    # ... and a newly unprotected version's blob is collected by the next plain run, which says so
    (src / "model.safetensors").write_bytes(b"third weights")
    released.store.add_version("billing", {"model.safetensors": src / "model.safetensors"})
    released.store.add_version("billing", {"model.safetensors": released.root / "loopgate.yaml"})
    assert cli("gc", "--dry-run", workspace=released.root).out.startswith("would delete 1 blobs")
    plain = cli("gc", workspace=released.root)
    assert plain.code == 0
    assert " ".join(plain.out.split()) == "deleted 1 blobs (0.0 MB) of 1 versions; kept 4 protected versions."
    assert cli("gc", "--json", workspace=released.root).json()["deleted_blobs"] == 0


def test_audit_verify_and_log_json(released: Any, cli: Cli) -> None:
    ok = cli("audit", "verify", "--json", workspace=released.root)
    assert ok.code == 0 and ok.json()["ok"] is True and ok.json()["entries"] >= 7
    log = cli("audit", "log", "--json", workspace=released.root).json()
    assert [e["kind"] for e in log].count("version.create") == 3
    assert all(e["hash"] and e["prev_hash"] for e in log)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["versions", "suport"], "unknown line 'suport' (did you mean 'support'?)"),
        (["channels", "nope"], "unknown line 'nope'"),
        (["lineage", "support"], "version ids read LINE@N"),
        (["lineage", "base@7"], "no version base@7"),
        (["register", "base", "--model", "/no/such/dir"], "no such folder"),
        (["register", "helpdesk", "--model", "."], "'helpdesk' is an app"),
    ],
)
def test_bad_input_is_one_paragraph_and_exit_2(workspace: Any, cli: Cli, args: list[str], message: str) -> None:
    res = cli(*args, "--json", workspace=workspace.root)
    assert res.code == 2
    assert message in " ".join(res.err.split())
    assert "Traceback" not in res.err and res.out == ""  # nothing on stdout that a JSON reader would choke on
    assert res.err.strip().count("\n\n") == 0


def test_missing_workspace_and_bad_spec_exit_2(tmp_path: Path, cli: Cli) -> None:
    res = cli("status", workspace=tmp_path)
    assert res.code == 2 and "is not a Loopgate workspace" in res.err and "loopgate init" in res.err
    (tmp_path / "loopgate.yaml").write_text("lines:\n  base: {tier: foundation, parnet: x}\n")
    res = cli("status", workspace=tmp_path)
    assert res.code == 2 and "lines.base.parnet: unknown key" in res.err and "Traceback" not in res.err


def test_usage_errors_exit_2(workspace: Any, cli: Cli) -> None:
    res = cli("register", "base", workspace=workspace.root)  # --model is required
    assert res.code == 2 and "Missing option '--model'" in res.err and "Traceback" not in res.err
    assert cli("no-such-command").code == 2
    assert cli("gc", "--keep-latest", "many", workspace=workspace.root).code == 2


def test_workspace_from_environment(workspace: Any, cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    monkeypatch.setenv("LOOPGATE_WORKSPACE", str(workspace.root))
    monkeypatch.chdir(tmp_path)
    res = cli("status", "--json")
    assert res.code == 0 and res.json()["ecosystem"] == "test-eco"
    # an explicit --workspace wins over the environment
    other = tmp_path / "other"
    assert cli("init", "--json", workspace=other).code == 0
    assert cli("status", "--json", workspace=other).json()["ecosystem"] == "my-ecosystem"
    monkeypatch.setenv("LOOPGATE_WORKSPACE", str(tmp_path / "fresh"))
    assert cli("init", "--json").json()["workspace"] == str((tmp_path / "fresh").resolve())


def test_console_script_end_to_end(released: Any) -> None:
    """The installed `loopgate` command (a few calls only: each pays the interpreter start-up)."""
    ws = released.root
    ok = loopgate("versions", "base", "--json", env={"LOOPGATE_WORKSPACE": str(ws)})
    assert ok.returncode == 0, ok.stderr
    assert [v["id"] for v in json.loads(ok.stdout)] == ["base@1", "base@2"]
    bad = loopgate("versions", "bsae", "--json", cwd=ws)
    assert bad.returncode == 2 and "did you mean 'base'" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stdout == ""
    import sqlite3

    with sqlite3.connect(ws / ".loopgate" / "registry.db") as c:
        c.execute("UPDATE ledger SET actor = 'mallory' WHERE seq = 2")
    tampered = loopgate("audit", "verify", "--json", "--workspace", ws)
    assert tampered.returncode == 1
    assert json.loads(tampered.stdout)["first_bad_seq"] == 2
