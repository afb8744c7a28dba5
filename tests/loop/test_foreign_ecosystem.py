"""The loop on an ecosystem the demo never built, driven through the CLI as a new user would drive it.

A foundation made with plain ``transformers`` and a byte-level BPE tokenizer (tests/loop/foreign_world.py) is
registered; three tiers are declared by hand; the foundation's suite has a ``train_path``, which is the only
data a registered foundation has in Loopgate. Every outcome asserted here is far from its gate's threshold
(a skill kept near 1.0 vs forgotten near 0; answers three times as long vs a 2× limit), for any
``LOOPGATE_TEST_SEED``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from foreign_world import build_foundations, sft_rows, skill, suite_rows, write_jsonl
from seed import SEED

from loopgate.hashing import sha256_file

SPEC: dict[str, Any] = {
    "name": "foreign",
    "suites": {
        # the foundation's skill; train_path is what replay rehearses for a registered foundation
        "colours": {"path": "suites/colours.jsonl", "max_new_tokens": 4, "train_path": "data/colours_train.jsonl"},
        # a ticket answer must name the team; anything around it is allowed
        "teams": {"path": "suites/teams.jsonl", "scorer": "contains", "max_new_tokens": 40},
        "refunds": {"path": "suites/refunds.jsonl", "max_new_tokens": 4},
    },
    "recipes": {
        "domain": {"method": "sft", "steps": 120, "batch_size": 24, "lr": 3e-3, "max_length": 32,
                   "replay": {"share": 0.5, "sources": ["suites"]}},
        # no replay, a high rate: learns the new mapping and forgets what it inherited
        "forgetful": {"method": "sft", "steps": 150, "batch_size": 24, "lr": 5e-3, "max_length": 32},
        # asks for the foundation's update history, which a registered foundation does not have
        "history-replay": {"method": "sft", "steps": 20, "batch_size": 24, "lr": 1e-3, "max_length": 32,
                           "replay": {"share": 0.5, "sources": ["history"]}},
    },
    "lines": {
        "base": {"tier": "foundation", "suites": ["colours"]},
        "support": {"tier": "industrial", "parent": "base", "recipe": "domain", "suites": ["teams"],
                    "transfer": ["diff_vector_finetune", "rerun"]},
        "refunds": {"tier": "application", "parent": "support", "recipe": "domain", "suites": ["refunds"]},
        "helpdesk": {"tier": "app", "parent": "support", "app": {"prompt_template": "{input}"}},
    },
    "policy": {"defaults": {}},
}


@pytest.fixture(scope="module")
def foundations(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_foundations(tmp_path_factory.mktemp("foreign-models"), SEED)


@pytest.fixture
def foreign(tmp_path: Path, foundations: tuple[Path, Path]) -> Path:
    """A workspace declared by hand: loopgate.yaml, suites and update data written as a user would."""
    root = tmp_path / "eco"
    write_jsonl(root / "suites/colours.jsonl", suite_rows(skill("colours", SEED)))
    write_jsonl(root / "data/colours_train.jsonl", sft_rows(skill("colours", SEED)))
    write_jsonl(root / "suites/teams.jsonl", suite_rows(skill("teams", SEED)))
    write_jsonl(root / "suites/refunds.jsonl", suite_rows(skill("refunds", SEED)))
    write_jsonl(root / "data/teams_v1.jsonl", sft_rows(skill("teams", SEED)))
    write_jsonl(root / "data/teams_tripled.jsonl", sft_rows(skill("teams", SEED), repeat=3))
    write_jsonl(root / "data/refunds_v1.jsonl", sft_rows(skill("refunds", SEED)))
    (root / "loopgate.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False), encoding="utf-8")
    return root


def _gates(result: Any) -> dict[str, dict[str, Any]]:
    return {g["name"]: g for g in result.json()["decision"]["gates"]}


def _no_traceback(result: Any) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    assert "Traceback" not in result.err + result.out


def test_the_whole_loop_on_a_registered_bpe_foundation(foreign: Path, foundations: tuple[Path, Path],
                                                        cli: Callable[..., Any]) -> None:
    ws = foreign
    f1, f2 = foundations
    assert cli("init", ws).code == 0
    assert cli("register", "base", "--model", f1, "--json", workspace=ws).code == 0
    r = cli("release", "base@1", "--json", workspace=ws)
    assert r.code == 0 and r.json()["released"], r.out

    # a benign update of the industrial line ships; the inherited colours are rehearsed from the suite's train_path
    r = cli("update", "support", "--data", ws / "data/teams_v1.jsonl", "--json", workspace=ws)
    assert r.code == 0, (r.out, r.err)
    out = r.json()
    assert out["released"] and out["version"] == "support@1"
    assert _gates(r)["inheritance"]["verdict"] == "pass"

    # the same data again (a CI retry): nothing is trained twice, the version holding it is named, exit 0
    r = cli("update", "support", "--data", ws / "data/teams_v1.jsonl", "--json", workspace=ws)
    assert r.code == 0 and r.json()["version"] == "support@1" and "already released" in r.json()["note"]

    # answers three times as long on the line's own suite: still correct (contains), blocked by cost
    r = cli("update", "support", "--data", ws / "data/teams_tripled.jsonl", "--json", workspace=ws)
    assert r.code == 3, (r.out, r.err)
    gates = _gates(r)
    assert gates["cost"]["verdict"] == "fail", gates["cost"]["summary"]
    length = next(c for c in gates["cost"]["evidence"]["checks"]
                  if c["figure"] == "mean_output_tokens" and c["kind"] == "ratio" and c["suite"] == "teams")
    assert length["value"] > 2.5 and length["verdict"] == "fail"
    assert gates["cost"]["evidence"]["traffic_suites"] == ["teams"]
    assert gates["regression"]["verdict"] == "pass"
    assert gates["cost"]["evidence"]["suites"]["teams"]["measured_back_to_back"]
    # rollback readiness: support@1 was reloaded and re-scored on its smoke suite, and scores what it shipped at
    rb = gates["rollback"]
    assert rb["verdict"] == "pass" and rb["evidence"]["target"] == "support@1"
    assert rb["evidence"]["smoke_score"] == rb["evidence"]["recorded_smoke_score"] is not None

    # an application line's first candidate is rejected (it forgets what it inherited) …
    r = cli("update", "refunds", "--data", ws / "data/refunds_v1.jsonl", "--recipe", "forgetful", "--json",
            workspace=ws)
    assert r.code == 3 and _gates(r)["inheritance"]["verdict"] == "fail", (r.out, r.err)
    rejected = r.json()["version"]
    # … and the next update starts from the parent's production, never from the rejected candidate
    r = cli("update", "refunds", "--data", ws / "data/refunds_v1.jsonl", "--no-propagate", "--json", workspace=ws)
    assert r.code in (0, 3), (r.out, r.err)
    versions = {v["id"]: v for v in cli("versions", "refunds", "--json", workspace=ws).json()}
    second = versions[r.json()["version"]]
    assert second["provenance"]["built_from"] == "support@1" != rejected

    # a new foundation propagates: support is re-derived on base@2 and keeps its inherited colours through
    # suite replay (a registered foundation has no update history to rehearse)
    assert cli("register", "base", "--model", f2, "--json", workspace=ws).code == 0
    r = cli("release", "base@2", "--json", workspace=ws)
    assert r.code == 0 and r.json()["released"], (r.out, r.err)
    prop = {p["line"]: p for p in r.json()["propagation"]}
    assert prop["support"]["released"] and not prop["support"]["pinned"], prop["support"]
    child = prop["support"]["version"]
    status = {row["line"]: row for row in cli("status", "--json", workspace=ws).json()["lines"]}
    assert status["support"]["channels"]["production"] == child and not status["support"]["pinned"]
    evals = {e["suite"]: e for e in cli("evaluate", child, "--json", workspace=ws).json()}
    assert evals["colours"]["score"] >= 0.8 and evals["teams"]["score"] >= 0.8, evals
    versions = {v["id"]: v for v in cli("versions", "support", "--json", workspace=ws).json()}
    prov = versions[child]["provenance"]
    assert prov["transferred_from"] == {"old_parent": "base@1", "old_child": "support@1"}
    assert prov["strategy"] in ("diff_vector_finetune", "rerun")
    # what was rehearsed: the foundation suite's train_path, by the update and by the re-derivation alike
    colours_sha = sha256_file(ws / "data/colours_train.jsonl")
    assert versions["support@1"]["provenance"]["replay_sha256"] == [colours_sha]
    assert prov["replay_sha256"] == [colours_sha]


def test_replay_that_finds_no_rows_fails_and_resume_finishes_the_killed_run(foreign: Path,
                                                                             foundations: tuple[Path, Path],
                                                                             cli: Callable[..., Any]) -> None:
    ws = foreign
    assert cli("init", ws).code == 0
    assert cli("register", "base", "--model", foundations[0], workspace=ws).code == 0
    assert cli("release", "base@1", workspace=ws).code == 0

    # a recipe asking for the registered foundation's update history finds nothing: exit 2, naming what it
    # searched; the run is recorded as failed, not as interrupted
    r = cli("update", "base", "--data", ws / "data/colours_train.jsonl", "--recipe", "history-replay",
            workspace=ws)
    _no_traceback(r)
    assert "found no rows" in r.err and "update data of 'base'" in r.err and "replay.required" in r.err

    # bad input: exit 2, one paragraph naming the file, nothing recorded
    binary = ws / "data/binary.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    r = cli("update", "support", "--data", binary, workspace=ws)
    _no_traceback(r)
    assert "binary.jsonl" in r.err

    # a killed update (SIGKILL right after its version is registered) …
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOOPGATE_KILL_AT": "after-register"}
    killed = subprocess.run([sys.executable, "-m", "loopgate", "update", "support", "--data",
                             str(ws / "data/teams_v1.jsonl"), "--workspace", str(ws)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert killed.returncode == -9, killed.stderr
    # … is finished by resume, which reports the failed run instead of re-running it forever
    r = cli("resume", "--json", workspace=ws)
    assert r.code == 0, (r.out, r.err)
    res = r.json()
    assert [o["version"] for o in res["finished"]] == ["support@1"]
    assert res["finished"][0]["released"], res["finished"][0]["decision"]["gates"]
    assert [f["line"] for f in res["failed"]] == ["base"] and "found no rows" in res["failed"][0]["error"]
    again = cli("resume", "--json", workspace=ws).json()
    assert again["finished"] == [] and len(again["failed"]) == 1


def test_a_truncated_safetensors_file_is_refused_at_registration(foreign: Path, foundations: tuple[Path, Path],
                                                                  cli: Callable[..., Any], tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(foundations[0], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert cli("init", foreign).code == 0
    r = cli("register", "base", "--model", broken, workspace=foreign)
    _no_traceback(r)
    assert "model.safetensors" in r.err
    assert json.loads(cli("versions", "base", "--json", workspace=foreign).out) == []


def test_propagation_accepts_a_child_through_the_same_decision_function_as_a_release(
        foreign: Path, foundations: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """One decision path: the re-derived child's acceptance and every release call ``gates.policy.decide`` through
    ``loop.gating.decide_candidate``; only which gates count differs (``propagation.accept_gates``)."""
    from loopgate import loop
    from loopgate.gates import policy as gate_policy
    from loopgate.loop import gating

    calls: list[tuple[str, list[str] | None]] = []
    real = gate_policy.decide

    def spy(ctx: Any, policy: Any, only: Any = None) -> Any:
        calls.append((ctx.candidate, None if only is None else list(only)))
        return real(ctx, policy, only)

    monkeypatch.setattr(gating, "decide", spy)
    ws = loop.Workspace.init(foreign)[0]
    loop.register_model(ws, "base", foundations[0])
    assert loop.release(ws, "base@1", actor="ci").released
    assert loop.update(ws, "support", [foreign / "data/teams_v1.jsonl"], actor="ci").released
    loop.register_model(ws, "base", foundations[1])
    out = loop.release(ws, "base@2", actor="ci")
    child = next(p for p in out.propagation if p.line == "support")
    assert child.released, child
    accept = ws.eco.policy_for("support").propagation.accept_gates
    transfer_calls = [c for c in calls if c[0].startswith("support<-")]
    assert transfer_calls and all(only == accept for _, only in transfer_calls)
    assert (child.version, None) in calls  # the accepted child then faces every gate, as any release does
    assert {c[0] for c in calls} >= {"base@1", "support@1", "base@2", child.version}
    assert len(calls) == len(transfer_calls) + 4  # nothing else decides
