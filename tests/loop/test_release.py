"""The release loop on a copy of the demo ecosystem: each test asserts a verdict measured on real tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopgate import loop
from loopgate.errors import LoopgateError
from loopgate.hashing import sha256_file
from loopgate.loop.versions import ecosystem_status, model_dir, register_model
from loopgate.loop.workspace import Workspace
from loopgate.records import Verdict


def _edit_spec(ws: Workspace, edit: Any) -> Workspace:
    path = ws.root / "loopgate.yaml"
    spec = yaml.safe_load(path.read_text())
    edit(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return Workspace.open(ws.root)


def _cli(ws: Workspace, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOOPGATE_USER": "ci", **(env or {})}
    return subprocess.run([sys.executable, "-m", "loopgate", *args, "--workspace", str(ws.root)],
                          capture_output=True, text=True, env=full_env, timeout=600)


def test_forgetting_an_owned_suite_is_blocked_by_regression_exit_3_and_junit(ws_copy: Workspace,
                                                                             tmp_path: Path) -> None:
    """billing trained on the returns skill with no replay forgets its own suite: regression fails."""
    before = ws_copy.store.channel("billing", "production")
    junit = tmp_path / "gates.xml"
    r = _cli(ws_copy, "update", "billing", "--data", str(ws_copy.root / "data/returns_v1.jsonl"),
             "--recipe", "support-fast", "--json", "--junit", str(junit), "--no-propagate")
    assert r.returncode == 3, r.stderr
    out = json.loads(r.stdout)
    gates = {g["name"]: g for g in out["decision"]["gates"]}
    assert out["released"] is False and gates["regression"]["verdict"] == "fail"
    assert gates["regression"]["evidence"]["suites"]["billing"]["negative_flips"] > 0
    assert ws_copy.store.channel("billing", "production") == before
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["regression"].find("failure") is not None
    assert cases["approval"].find("failure") is None


def test_release_whose_rollback_target_is_gone_is_blocked(ws_copy: Workspace) -> None:
    prod = ws_copy.store.channel("returns", "production")
    assert prod is not None
    for sha in ws_copy.store.version(prod).files.values():
        ws_copy.store.artifacts.delete(sha)
    out = loop.update(ws_copy, "returns", [ws_copy.root / "data/returns_v1.jsonl"], actor="ci", propagate=False,
                      again=True)
    gate = next(g for g in out.decision.gates if g.name == "rollback")
    assert gate.verdict is Verdict.failed and not out.released
    assert ws_copy.store.channel("returns", "production") == prod


def test_requester_cannot_approve_their_own_release(ws_copy: Workspace) -> None:
    ws = _edit_spec(ws_copy, lambda s: s["policy"].setdefault("lines", {}).update(
        {"returns": {"approval": {"approvers": 1}}}))
    out = loop.update(ws, "returns", [ws.root / "data/returns_v1.jsonl"], actor="alice", propagate=False,
                      again=True)
    approval = next(g for g in out.decision.gates if g.name == "approval")
    assert approval.verdict is Verdict.inconclusive and not out.released, out.decision.gates
    other_gates = [g for g in out.decision.gates if g.name != "approval" and g.blocking]
    # returns retrained on the data it already shipped, with replay: every other gate passes, so the approval
    # alone decides — which is what this test is about
    assert all(g.verdict is Verdict.passed for g in other_gates), [(g.name, g.summary) for g in other_gates]
    with pytest.raises(LoopgateError, match="two-person rule"):
        loop.approve(ws, out.version, "alice", "looks fine to me")
    again = loop.approve(ws, out.version, "bob", "reviewed the release notes")
    assert again.released and ws.store.channel("returns", "production") == out.version
    assert [a.approver for a in ws.store.approvals(out.version)] == ["bob"]


def test_foundation_upgrade_one_child_by_diff_vector_one_pinned(ws_copy: Workspace) -> None:
    """A small upgrade of the foundation: support keeps its skills through a plain diff-vector; returns may only
    re-attach an adapter it does not have, so it stays pinned to its old parent — and nothing below it moves."""
    ws = _edit_spec(ws_copy, lambda s: (
        s["recipes"].update({"tiny-upgrade": {"method": "pretrain", "steps": 30, "batch_size": 32, "lr": 1e-4,
                                              "max_length": 64}}),
        s["lines"]["returns"].update({"transfer": ["reattach"]})))
    returns_before = ws.store.channel("returns", "production")
    plan = {w.line: w for w in loop.plan(ws, "base@1")}
    assert plan["returns"].strategies == ["reattach"]
    assert plan["support"].strategies[0] == "diff_vector"
    out = loop.update(ws, "base", [ws.root / "data/base_v2.jsonl"], recipe_name="tiny-upgrade", actor="ci",
                      again=True)  # base@2 of the demo shipped this data: a second, smaller upgrade on it
    assert out.released, out.decision.gates
    prop = {p.line: p for p in out.propagation}
    assert prop["support"].strategy == "diff_vector" and prop["support"].released, prop["support"]
    assert prop["returns"].pinned and prop["returns"].to_parent == prop["support"].version
    assert ws.store.channel("returns", "production") == returns_before
    status = {r.line: r for r in ecosystem_status(ws)}
    assert status["returns"].pinned and "pinned" in status["returns"].note
    assert any(e.kind == "propagation.pinned" and e.subject == "returns" for e in ws.store.ledger())


def test_rollback_restores_previous_weights_bit_for_bit_and_cascades(ws_copy: Workspace) -> None:
    ws = ws_copy
    current = ws.store.channel("support", "production")
    target = ws.store.rollback_target("support")
    assert current and target and current != target
    want = {rel: sha for rel, sha in ws.store.version(target).files.items()}
    children_on_current = {}
    for child in ("billing", "returns"):
        prod = ws.store.channel(child, "production")
        if prod is not None and ws.store.version(prod).parent_version == current:
            children_on_current[child] = prod
    res = loop.rollback(ws, "support", reason="incident", actor="oncall")
    assert ws.store.channel("support", "production") == target
    served = model_dir(ws, target)
    for rel, sha in want.items():
        assert sha256_file(served / rel) == sha  # bit for bit the previous weights
    cascaded = {c.line for c in res.cascade}
    assert cascaded == set(children_on_current)
    for c in cascaded:
        assert ws.store.channel(c, "production") != children_on_current[c]
    assert ws.store.verify_ledger().ok


def test_kill_mid_update_resumes_without_duplicates(ws_copy: Workspace) -> None:
    ws = ws_copy
    n_before = len(ws.store.versions("returns"))
    args = ["update", "returns", "--data", str(ws.root / "data/returns_v1.jsonl"), "--no-propagate", "--json",
            "--again"]
    killed = _cli(ws, *args, env={"LOOPGATE_KILL_AT": "after-register"})
    assert killed.returncode == -9, killed.stderr
    assert len(ws.store.versions("returns")) == n_before + 1  # the version exists, nothing after it ran
    assert ws.store.open_steps(), "the interrupted run must be recorded as open"
    resumed = _cli(ws, "resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    outs = json.loads(resumed.stdout)["finished"]
    assert len(outs) == 1
    new = outs[0]["version"]
    assert len(ws.store.versions("returns")) == n_before + 1  # no second version
    assert len(ws.store.decisions(new)) == 1
    assert not [k for k, _ in ws.store.open_steps() if k.startswith("run:")]

    # a second kill, after the decision (new data, so a new run): re-running the same command decides nothing
    # twice and exits as the stored decision says
    half = ws.root / "data/returns_half.jsonl"
    half.write_text("".join((ws.root / "data/returns_v1.jsonl").read_text().splitlines(keepends=True)[::2]))
    args2 = ["update", "returns", "--data", str(half), "--no-propagate", "--json"]
    killed = _cli(ws, *args2, env={"LOOPGATE_KILL_AT": "after-decision"})
    assert killed.returncode == -9, killed.stderr
    second = ws.store.versions("returns")[-1].id
    assert second != new and len(ws.store.decisions(second)) == 1
    decided = ws.store.decisions(second)[0].verdict
    again = _cli(ws, *args2)
    assert again.returncode == (0 if decided is Verdict.passed else 3), again.stderr
    assert json.loads(again.stdout)["version"] == second
    assert len(ws.store.decisions(second)) == 1
    assert not [k for k, _ in ws.store.open_steps() if k.startswith("run:")]
    assert ws.store.verify_ledger().ok


def test_register_release_held_back_then_promote(ws_copy: Workspace) -> None:
    """An externally trained version (here: a copy of the current weights) is registered and gated; with
    auto_release off a passing decision waits for `promote`, which moves the channel through that decision."""
    ws = _edit_spec(ws_copy, lambda s: s["policy"].setdefault("lines", {}).update(
        {"returns": {"release": {"auto_release": False}}}))
    prod = ws.store.channel("returns", "production")
    assert prod is not None
    v = register_model(ws, "returns", model_dir(ws, prod), note="re-exported by the training team")
    with pytest.raises(LoopgateError, match="no passing decision"):
        loop.promote(ws, v.id, "production")
    out = loop.release(ws, v.id, actor="ci")
    assert out.decision.verdict is Verdict.passed and not out.released
    assert ws.store.channel("returns", "production") == prod
    res = loop.promote(ws, v.id, "production", actor="ci")
    assert ws.store.channel("returns", "production") == v.id
    assert res.moves[0].decision_id == out.decision.id
    hist = ws.store.channel_history("returns", "production")
    assert hist[-1].kind == "promote" and hist[-1].from_version == prod
