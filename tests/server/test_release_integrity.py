"""Release integrity (#26): no path around the gates, and a record that covers the state.

The world is the control plane's (tests/server/test_api_world.py: base@1 and support@1 released, support@2
waiting for an approver, guard@1 failed by its safety gate) grown by two more releases of ``support``:
support@3 (its own config file, so its files can be collected alone) and support@4 in production, so
support@3 is the rollback target, plus support@5, registered and never decided. Every way to move a
channel — each verb from the service layer, the CLI, the REST API and the dashboard — onto a blocked, a
never-decided, a collected or another line's version is refused (exit 2 / HTTP 409), moves nothing and leaves
only the refusal in the ledger.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_api_world import AUTHOR, build_world

from loopgate import loop
from loopgate.errors import LoopgateError, MoveRefused
from loopgate.identity import IdentityError, normalise_identity
from loopgate.loop.gating import version_baselines
from loopgate.loop.rules import TwoPersonRuleError
from loopgate.loop.versions import register_model
from loopgate.loop.workspace import Workspace
from loopgate.records import Verdict
from loopgate.server.app import create_app
from loopgate.store.tokens import create_token

_BUILT: dict[str, Path] = {}


def _grown_world(model_dir: Path, factory: pytest.TempPathFactory) -> Path:
    """The control world plus support@3 (own config blob), support@4 (production) and support@5 (undecided)."""
    key = str(model_dir)
    if key not in _BUILT:
        root = factory.getbasetemp() / "integrity-world" / "ws"
        build_world(root, model_dir)
        ws = Workspace.open(root)
        own = factory.getbasetemp() / "integrity-world" / "model-own-config"
        shutil.copytree(model_dir, own)
        cfg = json.loads((own / "config.json").read_text())
        cfg["loopgate_note"] = "same weights, a config file of its own"
        (own / "config.json").write_text(json.dumps(cfg))
        for folder in (own, model_dir):
            v = register_model(ws, "support", folder, actor=AUTHOR)
            assert not loop.release(ws, v.id, actor=AUTHOR, propagate=False).released  # waits for an approver
            assert loop.approve(ws, v.id, "carol", "reviewed").released
        register_model(ws, "support", model_dir, actor=AUTHOR)
        assert ws.store.channel("support") == "support@4" and ws.store.rollback_target("support") == "support@3"
        ws.store.close()
        _BUILT[key] = root
    return _BUILT[key]


@pytest.fixture
def world(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Workspace:
    dest = tmp_path / "ws"
    shutil.copytree(_grown_world(tiny_model_dir, tmp_path_factory), dest)
    ws = Workspace.open(dest)
    yield ws
    ws.store.close()


def _collect_support_3(ws: Workspace) -> None:
    """Delete the blob only support@3 holds (its config), as gc would once nothing protected it."""
    others = {sha for v in ws.store.all_versions() if v.id != "support@3" for sha in v.files.values()}
    own = [sha for sha in ws.store.version("support@3").files.values() if sha not in others]
    assert own, "support@3 shares every file with another version"
    for sha in own:
        ws.store.artifacts.delete(sha)


def _state(ws: Workspace) -> dict[str, Any]:
    return {line: ws.store.channels(line) for line in ("base", "support", "guard")}


# (verb, target, what the refusal says)
MOVES = [
    ("promote", "support@2", "no passing decision"),  # blocked: waits for an approver
    ("promote", "guard@1", "no passing decision"),  # blocked: failed its safety gate
    ("promote", "support@5", "no passing decision"),  # never decided
    ("promote", "support@3", "garbage-collected"),  # passed, then collected
    ("rollback", "support@2", "never released to support's production"),
    ("rollback", "support@5", "never released to support's production"),
    ("rollback", "support@3", "garbage-collected"),
    ("rollback", "guard@1", "is a version of 'guard', not of 'support'"),
]


def _via_loop(ws: Workspace, verb: str, target: str) -> str:
    with pytest.raises(MoveRefused) as e:
        if verb == "promote":
            loop.promote(ws, target, "production", actor="rita")
        else:
            loop.rollback(ws, "support", to=target, reason="try", actor="rita")
    return str(e.value)


def _via_cli(ws: Workspace, verb: str, target: str, cli: Any) -> str:
    args = ["promote", target] if verb == "promote" else ["rollback", "support", "--to", target, "--reason", "try"]
    res = cli(*args, "--as", "rita", workspace=ws.root)
    assert res.code == 2, (res.out, res.err)
    return " ".join(res.err.split())


def _via_rest(ws: Workspace, verb: str, target: str) -> str:
    token = create_token(ws.store, role="releaser", name="rita", actor="test").token
    with TestClient(create_app(ws.root, gateway=False)) as client:
        if verb == "promote":
            r = client.post(f"/api/v1/versions/{target}/promote", json={"channel": "production"},
                            headers={"Authorization": f"Bearer {token}"})
        else:
            r = client.post("/api/v1/lines/support/rollback", json={"to": target, "reason": "try"},
                            headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "MoveRefused"
    return str(r.json()["message"])


def _via_dashboard(ws: Workspace, verb: str, target: str) -> str:
    """A releaser logged in to the dashboard posts the page's own form (with its CSRF token)."""
    import html
    import re

    token = create_token(ws.store, role="releaser", name="rita", actor="test").token
    own = {"Origin": "http://testserver"}
    with TestClient(create_app(ws.root, gateway=False)) as client:
        assert client.post("/login", data={"token": token, "next": "/"}, headers=own,
                           follow_redirects=False).status_code == 303
        found = re.search(r'name="csrf" value="([0-9a-f]*)"', client.get("/lines/support").text)
        assert found is not None
        if verb == "promote":
            r = client.post(f"/versions/{target}/promote", data={"channel": "production", "csrf": found.group(1)},
                            headers=own, follow_redirects=False)
        else:
            r = client.post("/lines/support/rollback", data={"to": target, "reason": "try", "csrf": found.group(1)},
                            headers=own, follow_redirects=False)
    assert r.status_code == 409, r.text[-500:]
    return html.unescape(r.text)


@pytest.mark.parametrize("front", ["loop", "cli", "rest", "dashboard"])
def test_every_way_onto_a_version_not_gated_for_the_move_is_refused(world: Workspace, front: str,
                                                                     cli: Any) -> None:
    _collect_support_3(world)
    for verb, target, says in MOVES:
        before, ledger = _state(world), len(world.store.ledger())
        if front == "loop":
            message = _via_loop(world, verb, target)
        elif front == "cli":
            message = _via_cli(world, verb, target, cli)
        elif front == "rest":
            message = _via_rest(world, verb, target)
        else:
            message = _via_dashboard(world, verb, target)
        assert says in " ".join(message.split()), (verb, target, message[-800:])
        assert _state(world) == before, (verb, target)
        new = world.store.ledger()[ledger:]
        if front in ("rest", "dashboard"):  # these mint their token first (a token.create entry)
            new = [e for e in new if e.kind != "token.create"]
        assert [e.kind for e in new] == ["channel.refused"], (verb, target, [e.kind for e in new])
        assert new[0].payload["to"] == target and says in new[0].payload["why"]
    assert world.store.verify_ledger().ok


def test_the_rule_holds_at_the_store_too(world: Workspace) -> None:
    """A move made straight on the store, past every verb, meets the same rule."""
    failed = world.store.decisions("guard@1")[-1]
    assert failed.verdict is Verdict.failed
    with pytest.raises(MoveRefused, match="not a pass"):
        world.store.move_channels([("guard", "production", "guard@1")], kind="release", reason="sneak",
                                  actor="x", decision_id=failed.id)
    with pytest.raises(MoveRefused, match="not a decision of support@5"):
        world.store.move_channels([("support", "canary", "support@5")], kind="promote", reason="sneak",
                                  actor="x", decision_id=world.store.decisions("support@4")[-1].id)
    assert world.store.channel("guard") is None and world.store.channel("support", "canary") is None


def test_a_rollback_past_the_rule_is_an_admins_with_a_reason_and_is_recorded(world: Workspace) -> None:
    with pytest.raises(TwoPersonRuleError, match="only an admin"):
        loop.rollback(world, "support", to="support@5", reason="hotfix", actor="rita", force=True, role="releaser")
    with pytest.raises(LoopgateError, match="needs a reason"):
        loop.rollback(world, "support", to="support@5", actor="ada", force=True, role="admin")
    out = loop.rollback(world, "support", to="support@5", reason="the incident needs it", actor="ada", force=True,
                        role="admin")
    assert out.to_version == "support@5" and world.store.channel("support") == "support@5"
    entry = world.store.ledger()[-1]
    assert entry.kind == "channel.rollback" and entry.payload["forced"] is True and entry.actor == "ada"
    # a forced version is not a gated one: it never becomes a rollback target of its own
    loop.rollback(world, "support", to="support@4", reason="back", actor="ada")
    with pytest.raises(MoveRefused, match="never released"):
        loop.rollback(world, "support", to="support@5", reason="again", actor="rita")


def test_an_approval_approves_one_decision_and_a_rollback_spends_it(world: Workspace) -> None:
    """After a rollback, releasing the rolled-back version again is a new decision that needs its own approval:
    one person cannot undo a two-person decision with a plain release."""
    loop.rollback(world, "support", reason="incident", actor="rita")
    assert world.store.channel("support") == "support@3"
    again = loop.release(world, "support@4", actor="rita", propagate=False)
    assert not again.released and world.store.channel("support") == "support@3"
    gate = next(g for g in again.decision.gates if g.name == "approval")
    assert gate.verdict is Verdict.inconclusive, gate.summary
    with pytest.raises(MoveRefused, match="before support@4 was rolled back"):  # the old passing decision is spent
        old = [d for d in world.store.decisions("support@4") if d.verdict is Verdict.passed][0]
        world.store.move_channels([("support", "production", "support@4")], kind="promote", reason="old",
                                  actor="rita", decision_id=old.id)
    with pytest.raises(TwoPersonRuleError):  # rita requested this release
        loop.approve(world, "support@4", "Rita", "fine")
    out = loop.approve(world, "support@4", "carol", "looked at the incident, fixed upstream")
    assert out.released and world.store.channel("support") == "support@4"
    approvals = world.store.approvals("support@4")
    assert [a.approver for a in approvals] == ["carol", "carol"]
    assert approvals[-1].decision_id == again.decision.id != approvals[0].decision_id


def test_identities_compare_as_one_person(world: Workspace, cli: Any) -> None:
    assert normalise_identity("Ａlice") == normalise_identity("ALICE") == "alice"  # NFKC + casefold
    for hidden in ("alice\u200b", "al\u202eice", "ali\x00ce", "", "a" * 65, "alice smith"):
        with pytest.raises(IdentityError):
            normalise_identity(hidden)
    loop.release(world, "support@5", actor="dana", propagate=False)
    for variant in ("DANA", "Dana", "ｄａｎａ"):
        with pytest.raises(TwoPersonRuleError, match="requested the release"):
            loop.approve(world, "support@5", variant, "me again")
    with pytest.raises(TwoPersonRuleError, match="created support@5"):  # bob registered it
        loop.approve(world, "support@5", "BOB", "author")
    res = cli("approve", "support@5", "--as", "dana\u200b", "--reason", "x", workspace=world.root)
    assert res.code == 2 and "invisible" in res.err
    res = cli("approve", "support@5", "--as", "Dana", "--reason", "x", workspace=world.root)
    assert res.code == 2 and "two-person rule" in res.err
    assert world.store.approvals("support@5") == [] and world.store.channel("support") == "support@4"


def test_an_admin_cannot_approve_through_a_token_they_minted(world: Workspace) -> None:
    ada = create_token(world.store, role="admin", name="ada", actor="test").token
    with TestClient(create_app(world.root, gateway=False)) as client:
        def post(path: str, token: str, body: dict[str, Any] | None = None) -> Any:
            return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})

        assert post("/api/v1/versions/support@5/release", ada).json()["released"] is False
        minted = post("/api/v1/tokens", ada, {"role": "approver", "name": "Zed"}).json()
        assert minted["name"] == "zed"  # stored in the canonical form
        r = post("/api/v1/versions/support@5/approve", minted["token"], {"reason": "lgtm"})
        assert r.status_code == 403 and "created by ada" in r.json()["message"], r.text
        carol = create_token(world.store, role="approver", name="carol", actor="test").token
        r = post("/api/v1/versions/support@5/approve", carol, {"reason": "reviewed the notes"})
        assert r.status_code == 200 and r.json()["released"] is True, r.text


def test_a_rejected_candidate_is_never_a_baseline(world: Workspace, tiny_model_dir: Path) -> None:
    """support@2 never shipped: a version built from it is judged against what production held."""
    v = register_model(world, "support", tiny_model_dir, actor=AUTHOR, provenance={"built_from": "support@2"})
    base = version_baselines(world, v.id)
    assert base["previous"] == "support@4" and base["production"] == "support@4"
    out = loop.release(world, v.id, actor=AUTHOR, propagate=False)
    assert "support@2" not in out.decision.baselines.values()
    assert "never shipped" in out.decision.baseline_notes["previous"]


def test_propagation_starts_only_from_production(world: Workspace) -> None:
    out = loop.promote(world, "support@4", "canary", actor="rita")  # a canary-only move of a passing version
    assert out.propagation == [] and world.store.channel("support", "canary") == "support@4"
    loop.rollback(world, "support", reason="make room", actor="rita")
    with pytest.raises(LoopgateError, match="starts from production only"):
        loop.propagate_from(world, "support@4", actor="rita")


def test_audit_verify_names_a_forged_decision_and_a_hand_moved_channel(world: Workspace, cli: Any) -> None:
    assert cli("audit", "verify", "--json", workspace=world.root).json()["state_problems"] == []
    failed = world.store.decisions("guard@1")[-1]
    db = sqlite3.connect(world.root / ".loopgate" / "registry.db")
    db.execute("UPDATE decisions SET verdict='pass', record=json_set(record, '$.verdict', 'pass') WHERE id=?",
               (failed.id,))
    db.execute("UPDATE channels SET version_id='support@2' WHERE line='support' AND name='production'")
    db.execute("INSERT INTO approvals (version_id, approver, reason, overrides, created_at, decision_id) "
               "VALUES ('support@5', 'mallory', 'x', '[]', '2026-01-01', NULL)")
    db.commit()
    db.close()
    # the forged pass moves nothing: a move reads the decision's verdict from the ledger too
    with pytest.raises(MoveRefused, match="edited beside the ledger"):
        loop.promote(world, "guard@1", "canary", actor="rita")
    res = cli("audit", "verify", "--json", workspace=world.root)
    assert res.code == 1
    problems = "\n".join(res.json()["state_problems"])
    assert f"decision {failed.id} (guard@1)" in problems and "edited" in problems
    assert "channel support/production points at support@2 but the ledger moved it to support@4" in problems
    assert "approval" in problems and "mallory" in problems
    assert res.json()["ledger_ok"] is True  # the chain itself is intact: only the tables lie
