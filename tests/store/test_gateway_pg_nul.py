"""The request log on a real PostgreSQL (and SQLite): a prompt holding NUL (``\\u0000``), which PostgreSQL's text
columns refuse, used to fail the whole batch it was written in — 11 of 11 requests lost, their feedback then
404 (#20 item 7). Texts are now made storable (U+FFFD), and a row the database still refuses is written alone
so it never takes the rest of its batch with it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopgate.store import Store
from loopgate.store import gateway as gw
from loopgate.store.gateway import RequestRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))  # the gateway world's models


def record(i: int, prompt: str, **kw: object) -> RequestRecord:
    return RequestRecord(**{"id": f"cmpl-{i}", "app": "helper", "line": "base", "version_id": "base@1",
                            "channel": "production", "latency_ms": 1.0, "prompt_tokens": 3, "output_tokens": 1,
                            "prompt": prompt, "output": "x", "created_at": datetime.now(UTC), **kw})


def test_a_nul_prompt_keeps_its_whole_batch_and_feedback_on_it_works(store: Store) -> None:
    batch = [record(i, f"q{i}?") for i in range(10)] + [record(10, "bad\x00prompt", error="e\x00", ok=False)]
    assert gw.log_requests(store, batch) == 11
    assert len(gw.requests(store, "base@1")) == 11
    kept = gw.request(store, "cmpl-10")
    assert kept is not None and kept.prompt == "bad\ufffdprompt" and kept.error == "e\ufffd"
    for r in batch:
        assert gw.add_feedback(store, r.id, 0.0, label="l\x00", comment="c\ud800").request_id == r.id
    assert len(gw.feedback(store, "base@1")) == 11 and gw.feedback(store, "base@1")[-1].label == "l\ufffd"
    assert store.verify_ledger().ok


def test_a_row_the_database_still_refuses_does_not_lose_the_rest_of_its_batch(store: Store) -> None:
    assert gw.log_requests(store, [record(0, "first")]) == 1
    # the same id again cannot be written in any form; the ten others of its batch are
    batch = [record(i, f"q{i}?") for i in range(1, 6)] + [record(0, "again")] + [
        record(i, f"q{i}?") for i in range(6, 11)]
    assert gw.log_requests(store, batch) == 10
    assert sorted(r.id for r in gw.requests(store, "base@1")) == sorted(f"cmpl-{i}" for i in range(11))
    assert gw.request(store, "cmpl-0").prompt == "first"  # type: ignore[union-attr]
    entries = [e for e in store.ledger() if e.kind == "gateway.requests"]
    assert [e.payload["count"] for e in entries] == [1, 10]
    assert store.verify_ledger().ok


@pytest.fixture
def pg_world(tmp_path: Path, database: str | None) -> Iterator[Path]:
    """The gateway world (the good model released on ``base``) in a workspace whose registry is ``database``."""
    from gateway_world import SPEC, facts, model

    from loopgate import loop
    from loopgate.loop.workspace import Workspace

    ws_dir = tmp_path / "ws"
    (ws_dir / "suites").mkdir(parents=True)
    (ws_dir / "suites" / "smoke.jsonl").write_text("".join(
        f'{{"id": "s{i}", "prompt": "{p}", "target": "{a}"}}\n' for i, (p, a) in enumerate(facts()[:4])))
    ws, _ = Workspace.init(ws_dir, SPEC)
    loop.register_model(ws, "base", model("good"))
    assert loop.release(ws, "base@1", actor="alice").released
    ws.store.close()
    yield ws_dir


def test_a_gateway_batch_with_a_nul_prompt_is_logged_whole_and_rated(pg_world: Path, database: str | None) -> None:
    from gateway_world import Server, traffic

    server = Server(pg_world, require_keys=False, flush_s=3600)  # one flush, below: one batch of 11
    try:
        prompts = [p for p, _ in traffic()[:10]] + ["apple\x00?"]

        def ask(prompt: str) -> str:
            status, body = server.post("/completions", {"model": "helper", "prompt": prompt, "max_tokens": 4})
            assert status == 200, body
            return str(body["id"])

        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(ask, prompts))
        assert len(server.gateway._pending) == 11
        server.gateway.flush()
        assert len(gw.requests(server.ws.store, "base@1")) == 11
        for rid in ids:
            status, body = server.post("/feedback", {"request_id": rid, "score": 1.0})
            assert status == 200, body
        nul = gw.request(server.ws.store, ids[-1])
        assert nul is not None and nul.prompt == "apple\ufffd?"
    finally:
        server.stop()
