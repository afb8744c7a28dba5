"""Feedback abuse (#26 item 6). Measured before: one API key sending 16 requests and 8 bad ratings of one answer
rolled a canary back. Now an answer has one rating (the latest), a key's ratings count for at most
``feedback_per_key`` answers per version, and feedback has its own rate limit per key — while honest ratings
from several keys still roll a bad canary back."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gateway_world import Server, copy_workspace, model, template_workspace, traffic

from loopgate import loop
from loopgate.loop import canary as canary_loop
from loopgate.loop.workspace import Workspace
from loopgate.store import gateway as gw


def _bad_canary(tmp: Path, keys: int) -> tuple[Path, list[str]]:
    """The world with the bad model as base's live canary (min_samples 20), and ``keys`` API keys of ``helper``."""
    ws_dir = copy_workspace(template_workspace(tmp / "template"), tmp / "ws")
    ws = Workspace.open(ws_dir)
    loop.register_model(ws, "base", model("bad"))
    assert loop.release(ws, "base@2", actor="alice").released
    assert ws.store.channels("base")["canary"] == "base@2"
    made = [gw.create_key(ws.store, "helper", actor="alice")[0] for _ in range(keys)]
    ws.store.close()
    return ws_dir, made



def _attack(server: Server, key: str) -> dict[str, int]:
    """One key, one client: rate one canary answer bad 30 times, then send chosen ``user`` values, rating every
    answer the canary gave bad and every answer production gave good. The bad ratings sent, per channel."""
    client = server.client(key)
    sent = {"canary": 0, "production": 0}
    canary_answer = None
    for u in range(200):
        raw = client.completions.with_raw_response.create(model="helper", prompt="tiger?", max_tokens=4,
                                                          user=f"probe-{u}")
        if raw.headers["x-loopgate-channel"] == "canary":
            canary_answer = raw.parse().id
            break
    assert canary_answer is not None
    for _ in range(30):
        status, body = server.post("/feedback", {"request_id": canary_answer, "score": 0.0}, key)
        assert status == 200, body
        sent["canary"] += 1
    for u, (prompt, _) in enumerate(traffic() * 6):
        raw = client.completions.with_raw_response.create(model="helper", prompt=prompt, max_tokens=4,
                                                          user=f"chosen-{u}")
        channel = raw.headers["x-loopgate-channel"]
        status, body = server.post("/feedback", {"request_id": raw.parse().id,
                                                 "score": 0.0 if channel == "canary" else 1.0}, key)
        assert status == 200, body
        sent[channel] += 1
    return sent


@pytest.fixture
def attacked(tmp_path: Path) -> Iterator[tuple[Server, list[str]]]:
    ws_dir, keys = _bad_canary(tmp_path, keys=8)
    server = Server(ws_dir, burst=10_000, feedback_burst=10_000)  # rate limits out of the way: the cap must hold
    yield server, keys
    server.stop()


def test_one_key_cannot_roll_a_canary_back_but_several_honest_keys_do(attacked: tuple[Server, list[str]]) -> None:
    server, keys = attacked
    ws = server.ws
    sent = _attack(server, keys[0])
    server.gateway.flush()
    assert sent["canary"] >= 40 and sent["production"] >= 40, sent  # what used to roll the canary back
    assert ws.store.channels("base")["canary"] == "base@2"  # not rolled back
    status = canary_loop.status(ws, "base")
    assert status.analysis is not None
    bad = next(m for m in status.analysis.metrics if m.name == "bad_feedback_rate")
    assert bad.canary_n == 10 and bad.production_n == 10 and bad.verdict.value == "inconclusive", bad
    # the 30 ratings of one answer are one rating, its latest
    assert len(gw.feedback(ws.store, "base@2")) == sent["canary"] - 29
    assert not any(c.outcome == "rolled_back" for c in gw.canary_checks(ws.store, "base"))

    # honest users of seven other keys, each rating what it got by whether it is right: rolled back
    right = dict(traffic())

    def honest(i: int) -> None:
        key = keys[1 + i % 7]
        prompt = traffic()[i % len(traffic())][0]
        status, body = server.post("/completions", {"model": "helper", "prompt": prompt, "max_tokens": 4,
                                                    "user": f"person-{i}"}, key)
        assert status == 200, body
        score = float(body["choices"][0]["text"] == right[prompt])  # type: ignore[index]
        status, body = server.post("/feedback", {"request_id": body["id"], "score": score}, key)
        assert status == 200, body

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(honest, range(140)))
    server.gateway.flush()
    assert ws.store.channels("base")["canary"] == "base@1", canary_loop.status(ws, "base").analysis
    check = next(e for e in ws.store.ledger() if e.kind == "canary.check" and e.payload["outcome"] == "rolled_back")
    metrics = {m["name"]: m for m in check.payload["evidence"]["analysis"]["metrics"]}
    assert metrics["bad_feedback_rate"]["verdict"] == "fail" and metrics["bad_feedback_rate"]["canary_n"] >= 20


def test_without_the_cap_the_same_attack_rolls_the_canary_back(tmp_path: Path) -> None:
    """The control: the attack above is real — with ``feedback_per_key=None`` one key decides the canary."""
    ws_dir, keys = _bad_canary(tmp_path, keys=1)
    server = Server(ws_dir, burst=10_000, feedback_burst=10_000, feedback_per_key=None)
    try:
        _attack(server, keys[0])
        server.gateway.flush()
        assert server.ws.store.channels("base")["canary"] == "base@1"
    finally:
        server.stop()


def test_feedback_has_its_own_rate_limit_and_an_answer_is_rated_by_its_key(tmp_path: Path) -> None:
    ws_dir, keys = _bad_canary(tmp_path, keys=2)
    server = Server(ws_dir, feedback_rate_per_s=0.01, feedback_burst=3)
    try:
        client = server.client(keys[0])
        r = client.completions.create(model="helper", prompt="tiger?", max_tokens=4, user="ann")
        for score in (1.0, 0.0, 0.5):  # the latest wins
            status, body = server.post("/feedback", {"request_id": r.id, "score": score}, keys[0])
            assert status == 200 and body["counted"], body
        status, body = server.post("/feedback", {"request_id": r.id, "score": 1.0}, keys[0])
        assert status == 429 and body["error"]["code"] == "rate_limit_exceeded", body  # type: ignore[index]
        assert "feedback" in body["error"]["message"]  # type: ignore[index]
        assert client.completions.create(model="helper", prompt="tiger?", max_tokens=4).id  # requests still go
        rated = gw.feedback(server.ws.store, gw.request(server.ws.store, r.id).version_id)  # type: ignore[union-attr]
        assert [f.score for f in rated if f.request_id == r.id] == [0.5]
        # another key of the same app may not rate (or re-rate) this key's answer
        status, body = server.post("/feedback", {"request_id": r.id, "score": 0.0}, keys[1])
        assert status == 403 and body["error"]["type"] == "permission_error", body  # type: ignore[index]
        # a request with several prompts: each choice is rated by its index
        many = server.client(keys[1]).completions.create(model="helper", prompt=["tiger?", "piano?"], max_tokens=4)
        status, body = server.post("/feedback", {"request_id": many.id, "index": 1, "score": 1.0}, keys[1])
        assert status == 200 and body["request_id"] == f"{many.id}-1", body
        status, body = server.post("/feedback", {"request_id": many.id, "index": 5, "score": 1.0}, keys[1])
        assert status == 404, body
    finally:
        server.stop()


def test_the_split_is_sticky_per_key_and_user_and_differs_between_keys() -> None:
    share = canary_loop.sticky_share
    users = [f"user-{i}" for i in range(400)]
    assert all(share("base", "base@2", u, 7) == share("base", "base@2", u, 7) for u in users[:20])
    one = [share("base", "base@2", u, 1) < 0.5 for u in users]
    two = [share("base", "base@2", u, 2) < 0.5 for u in users]
    assert 150 < sum(one) < 250 and 150 < sum(two) < 250  # canary_weight 0.5 holds per key
    assert 150 < sum(a != b for a, b in zip(one, two, strict=True)) < 250  # a user value means nothing across keys
    # without keys (--no-api-keys) the split is the one it always was
    assert share("base", "base@2", "u", None) == canary_loop.sticky_share("base", "base@2", "u")
