"""The production end of the loop over real HTTP: a canary release takes half the traffic (sticky per user); a
bad canary (a tiny model trained on wrong answers), fed negative feedback, is rolled back automatically with
its evidence in the ledger; a good one is promoted; too little traffic stays inconclusive; feedback export
feeds ``update``, and its suite gates the next release."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from gateway_world import Server, copy_workspace, model, template_workspace, traffic

from loopgate import loop
from loopgate.hashing import sha256_file
from loopgate.loop import canary as canary_loop
from loopgate.loop import feedback as feedback_loop
from loopgate.loop.workspace import Workspace
from loopgate.records import Verdict
from loopgate.store import gateway as gw


def _with_canary(tmp: Path, kind: str, *, shadow: bool = False) -> Path:
    """A copy of the world whose base line released the ``kind`` model as its canary (base@2)."""
    ws_dir = copy_workspace(template_workspace(tmp / "template"), tmp / "ws")
    if shadow:
        spec = yaml.safe_load((ws_dir / "loopgate.yaml").read_text())
        spec["policy"]["defaults"]["release"]["shadow"] = True
        (ws_dir / "loopgate.yaml").write_text(yaml.safe_dump(spec))
    ws = Workspace.open(ws_dir)
    loop.register_model(ws, "base", model(kind))
    out = loop.release(ws, "base@2", actor="alice")
    assert out.released and [m.channel for m in out.channel_moves] == ["canary"]  # production stays
    assert ws.store.channels("base") == {"staging": None, "canary": "base@2", "production": "base@1"}
    assert out.propagation == []  # the wave waits for production
    ws.store.close()
    return ws_dir


def _drive(server: Server, users: range, *, rate: bool = True) -> dict[str, int]:
    """One request per user on the app, each answer rated by whether it is right (1) or wrong (0)."""
    client = server.client("unused")
    facts = traffic()

    def one(u: int) -> str:
        prompt, answer = facts[u % len(facts)]
        raw = client.completions.with_raw_response.create(model="helper", prompt=prompt, max_tokens=4,
                                                          user=f"user-{u}")
        r = raw.parse()
        if rate:
            status, body = server.post("/feedback", {"request_id": r.id, "score": float(r.choices[0].text == answer)})
            assert status == 200, body
        return raw.headers["x-loopgate-version"]

    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(one, users))
    return {v: versions.count(v) for v in set(versions)}


@pytest.fixture
def bad_canary(tmp_path: Path) -> Iterator[Server]:
    server = Server(_with_canary(tmp_path, "bad"), require_keys=False)
    yield server
    server.stop()


def test_a_bad_canary_fed_negative_feedback_is_rolled_back_with_its_evidence(bad_canary: Server, tmp_path: Path,
                                                                              cli: Callable[..., Any]) -> None:
    server = bad_canary
    ws = server.ws
    # sticky: a user always meets the same version
    client = server.client("unused")
    seen = {client.completions.with_raw_response.create(model="helper", prompt="tiger?", max_tokens=4,
                                                        user="same-user").headers["x-loopgate-version"]
            for _ in range(5)}
    assert len(seen) == 1
    # LINE:channel is exactly that channel, for every user
    for channel, version in (("canary", "base@2"), ("production", "base@1")):
        assert {client.completions.with_raw_response.create(model=f"base:{channel}", prompt="tiger?", max_tokens=4,
                                                            user=f"u{u}").headers["x-loopgate-version"]
                for u in range(6)} == {version}
    split = _drive(server, range(2000, 2040), rate=False)  # unrated traffic: nothing to judge the canary by
    assert 0.25 < split.get("base@2", 0) / 40 < 0.75, split  # canary_weight 0.5
    assert ws.store.channels("base")["canary"] == "base@2"
    _drive(server, range(120))
    server.gateway.flush()
    assert ws.store.channels("base") == {"staging": None, "canary": "base@1", "production": "base@1"}
    ledger = ws.store.ledger()
    check = next(e for e in ledger if e.kind == "canary.check" and e.payload["outcome"] == "rolled_back")
    assert check.subject == "base@2" and check.payload["verdict"] == "fail"
    metrics = {m["name"]: m for m in check.payload["evidence"]["analysis"]["metrics"]}
    bad = metrics["bad_feedback_rate"]
    assert bad["verdict"] == "fail" and bad["canary_rate"] > 0.9 and bad["production_rate"] < 0.1
    assert bad["ci_low"] > bad["tolerance"] and min(bad["canary_n"], bad["production_n"]) >= 20
    assert check.payload["consecutive_failures"] == 3  # the failure limit, not one unlucky look
    move = next(e for e in ledger if e.kind == "channel.rollback" and e.subject == "base/canary")
    assert move.payload["to"] == "base@1" and move.payload["canary_check"] == check.payload["check_id"]
    assert move.seq > check.seq
    # after the rollback every user meets production again
    assert set(_drive(server, range(1000, 1020), rate=False)) == {"base@1"}
    status = canary_loop.status(ws, "base")
    assert not status.state.active and status.outcome == "rolled_back"

    # what broke in production becomes update data, preference pairs and a regression suite
    out = tmp_path / "export"
    sft = feedback_loop.export(ws, "base", "sft", out / "sft.jsonl")
    dpo = feedback_loop.export(ws, "base", "dpo", out / "dpo.jsonl")
    suite = feedback_loop.export(ws, "base", "suite", out / "suite.jsonl")
    right = dict(traffic())
    sft_rows = [json.loads(x) for x in (out / "sft.jsonl").read_text().splitlines()]
    assert sft.rows == len(sft_rows) >= 10 and all(right[r["prompt"]] == r["completion"] for r in sft_rows)
    dpo_rows = [json.loads(x) for x in (out / "dpo.jsonl").read_text().splitlines()]
    assert dpo.rows >= 5 and all(r["chosen"] == right[r["prompt"]] != r["rejected"] for r in dpo_rows)
    suite_rows = [json.loads(x) for x in (out / "suite.jsonl").read_text().splitlines()]
    assert suite.rows >= 5 and all(r["target"] == right[r["prompt"]] for r in suite_rows)
    # the same through the CLI
    shown = cli("canary", "status", "base", "--json", workspace=ws.root)
    assert shown.code == 0 and shown.json()["outcome"] == "rolled_back"
    assert any(c["outcome"] == "rolled_back" for c in shown.json()["checks"])
    exported = cli("feedback", "export", "base", "--format", "dpo", "--out", out / "cli-dpo.jsonl", "--json",
                   workspace=ws.root)
    assert exported.code == 0 and exported.json()["rows"] == dpo.rows
    assert (out / "cli-dpo.jsonl").read_text() == (out / "dpo.jsonl").read_text()
    bad_format = cli("feedback", "export", "base", "--format", "csv", workspace=ws.root)
    assert bad_format.code == 2 and "formats are sft, dpo, suite" in bad_format.err

    # the suite gates every later version: the bad model, offered again, is blocked by it
    server.stop()
    spec_path = ws.root / "loopgate.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["suites"]["production-feedback"] = {"path": str(out / "suite.jsonl"), "max_new_tokens": 4}
    spec["lines"]["base"]["suites"].append("production-feedback")
    spec_path.write_text(yaml.safe_dump(spec))
    ws2 = Workspace.open(ws.root)
    loop.register_model(ws2, "base", model("bad"))
    blocked = loop.release(ws2, "base@3", actor="alice")
    regression = next(g for g in blocked.decision.gates if g.name == "regression")
    assert not blocked.released and regression.verdict is Verdict.failed
    assert regression.evidence["suites"]["production-feedback"]["verdict"] == "fail"
    assert ws2.store.channels("base")["canary"] == "base@1"
    # and the exported SFT rows are update data: `update` trains a candidate on them
    updated = loop.update(ws2, "base", [out / "sft.jsonl"], actor="alice")
    candidate = ws2.store.version(updated.version)
    assert candidate.source == "update" and updated.training  # trained, on exactly the exported file
    assert candidate.data_sha256 == [sha256_file(out / "sft.jsonl")]
    ws2.store.close()


def test_a_good_canary_is_promoted_and_too_little_traffic_stays_inconclusive(tmp_path: Path) -> None:
    server = Server(_with_canary(tmp_path, "good2"), require_keys=False)
    try:
        ws = server.ws
        _drive(server, range(16))
        server.gateway.flush()
        few = canary_loop.status(ws, "base")
        assert few.state.active and few.analysis is not None and few.analysis.verdict is Verdict.inconclusive
        assert "min_samples" in few.analysis.summary
        assert ws.store.channels("base")["production"] == "base@1"  # still watching
        _drive(server, range(16, 200))
        server.gateway.flush()
        assert ws.store.channels("base")["production"] == "base@2", canary_loop.status(ws, "base").analysis
        check = next(e for e in ws.store.ledger() if e.kind == "canary.check" and e.payload["outcome"] == "promoted")
        assert check.payload["verdict"] == "pass"
        assert all(m["verdict"] == "pass" for m in check.payload["evidence"]["analysis"]["metrics"])
        promote = next(e for e in ws.store.ledger() if e.kind == "channel.promote" and e.subject == "base/production")
        assert promote.payload["to"] == "base@2" and promote.payload["decision_id"] is not None
    finally:
        server.stop()


def test_a_shadow_canary_answers_every_request_but_users_only_see_production(tmp_path: Path) -> None:
    server = Server(_with_canary(tmp_path, "bad", shadow=True), require_keys=False)
    try:
        client = server.client("unused")
        for u, (prompt, answer) in enumerate(traffic()[:12]):
            raw = client.completions.with_raw_response.create(model="helper", prompt=prompt, max_tokens=4,
                                                              user=f"user-{u}")
            assert raw.headers["x-loopgate-version"] == "base@1" and raw.parse().choices[0].text == answer
        deadline = time.monotonic() + 60
        while len(gw.requests(server.ws.store, "base@2")) < 12:  # shadows answer after the user got theirs
            assert time.monotonic() < deadline
            server.gateway.flush()
            time.sleep(0.05)
        shadows = gw.requests(server.ws.store, "base@2")
        assert all(r.shadow and r.channel == "canary" and r.ok for r in shadows)
        right = dict(traffic())
        assert sum(r.output != right[r.prompt] for r in shadows) >= 10  # the bad model's answers, never shown
        status = canary_loop.status(server.ws, "base")
        assert status.state.shadow and status.analysis is not None
        assert [m.name for m in status.analysis.metrics] == ["error_rate", "slow_rate"]  # no user saw it: no feedback
    finally:
        server.stop()
