"""The gateway over real HTTP: a uvicorn server on 127.0.0.1 serving tiny trained models, talked to with the
official ``openai`` client (completions, chat, streaming, errors) and raw requests where the client cannot go."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import openai
import pytest
from gateway_world import Server, copy_workspace, template_workspace, traffic

from loopgate.loop.workspace import Workspace
from loopgate.store import gateway as gw


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    ws_dir = copy_workspace(template_workspace(tmp_path_factory.mktemp("gw-template")),
                            tmp_path_factory.mktemp("gw") / "ws")
    ws = Workspace.open(ws_dir)
    keys = {name: gw.create_key(ws.store, name, actor="alice")[0] for name in ("helper", "base", "plain")}
    ws.store.close()
    server = Server(ws_dir, burst=10_000, max_request_bytes=4096, max_tokens=32)
    yield server, keys
    server.stop()


def test_completions_answer_through_the_app_and_the_line(served: tuple[Server, dict[str, str]]) -> None:
    server, keys = served
    client = server.client(keys["helper"])
    right = 0
    for prompt, answer in traffic()[:10]:
        r = client.completions.create(model="helper", prompt=prompt, max_tokens=4, user="u1")
        assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == "helper"
        assert r.usage is not None and r.usage.prompt_tokens == len(prompt)  # one token per character
        assert r.choices[0].finish_reason == "stop"
        right += r.choices[0].text == answer
    assert right == 10  # base@1 (production) learned every fact
    raw = server.client(keys["base"]).completions.with_raw_response.create(model="base:production",
                                                                          prompt="apple?", max_tokens=4)
    assert raw.headers["x-loopgate-version"] == "base@1" and raw.parse().choices[0].text == "x"
    # a batch of prompts in one request: one choice each, in order
    many = client.completions.create(model="helper", prompt=[p for p, _ in traffic()[:3]], max_tokens=4)
    assert [c.text for c in many.choices] == [a for _, a in traffic()[:3]]


def test_chat_renders_the_chat_template_and_streams(served: tuple[Server, dict[str, str]]) -> None:
    server, keys = served
    client = server.client(keys["base"])
    prompt, answer = traffic()[0]
    r = client.chat.completions.create(model="base", messages=[{"role": "user", "content": prompt}], max_tokens=4)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == answer
    chunks = list(client.chat.completions.create(model="base", messages=[{"role": "user", "content": prompt}],
                                                 max_tokens=4, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == answer
    assert chunks[-1].choices[0].finish_reason == "stop"
    text_chunks = list(client.completions.create(model="base", prompt="river?", max_tokens=4, stream=True))
    assert "".join(c.choices[0].text for c in text_chunks) == "y"
    # a longer answer (an untrained model rambles to max_tokens) streams one event per token, same text
    plain = server.client(keys["plain"])
    whole = plain.completions.create(model="plain", prompt="apple?", max_tokens=6)
    assert whole.choices[0].finish_reason == "length"
    pieces = [c.choices[0].text for c in plain.completions.create(model="plain", prompt="apple?", max_tokens=6,
                                                                  stream=True)]
    assert "".join(pieces) == whole.choices[0].text and len([p for p in pieces if p]) >= 2


def test_errors_use_openais_error_body(served: tuple[Server, dict[str, str]]) -> None:
    server, keys = served
    with pytest.raises(openai.AuthenticationError) as e401:
        server.client("lg-not-a-key").completions.create(model="helper", prompt="apple?")
    assert e401.value.status_code == 401
    with pytest.raises(openai.NotFoundError) as e404:
        server.client(keys["helper"]).completions.create(model="no-such-app", prompt="apple?")
    assert e404.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.PermissionDeniedError):  # a key serves its own app only
        server.client(keys["helper"]).completions.create(model="base", prompt="apple?")
    with pytest.raises(openai.BadRequestError) as e400:
        server.client(keys["plain"]).chat.completions.create(model="plain", messages=[{"role": "user",
                                                                                         "content": "hi"}])
    assert "chat template" in e400.value.message
    with pytest.raises(openai.BadRequestError):  # over the gateway's max_tokens
        server.client(keys["helper"]).completions.create(model="helper", prompt="apple?", max_tokens=1000)
    status, body = server.post("/completions", b"{not json", keys["helper"])
    assert status == 400 and body["error"]["code"] == "invalid_json"  # type: ignore[index]
    status, body = server.post("/completions", {"model": "helper"}, keys["helper"])
    assert status == 400 and body["error"]["param"] == "prompt"  # type: ignore[index]
    status, body = server.post("/completions", {"model": "helper", "prompt": "a" * 5000}, keys["helper"])
    assert status == 413 and body["error"]["code"] == "request_too_large"  # type: ignore[index]
    status, body = server.post("/completions", {"model": "helper", "prompt": "apple?"}, None)
    assert status == 401 and body["error"]["type"] == "authentication_error"  # type: ignore[index]
    status, body = server.post("/embeddings", {"model": "helper", "input": "apple"}, keys["helper"])
    assert status == 404 and body["error"]["code"] == "unknown_url"  # type: ignore[index]
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as e405:
        urllib.request.urlopen(server.url + "/completions", timeout=30)  # a GET where only POST is served
    assert e405.value.code == 405 and e405.value.headers["allow"] == "POST"
    assert json.loads(e405.value.read())["error"]["code"] == "method_not_allowed"


def test_a_token_bucket_per_key_answers_429(tmp_path: Path) -> None:
    ws_dir = copy_workspace(template_workspace(tmp_path / "t"), tmp_path / "ws")
    ws = Workspace.open(ws_dir)
    key = gw.create_key(ws.store, "helper", actor="alice")[0]
    other = gw.create_key(ws.store, "helper", actor="alice")[0]
    ws.store.close()
    server = Server(ws_dir, rate_per_s=0.01, burst=2, flush_s=3600)  # the log is written only at shutdown
    try:
        client = server.client(key)
        for _ in range(2):
            client.completions.create(model="helper", prompt="apple?", max_tokens=2)
        with pytest.raises(openai.RateLimitError) as e429:
            client.completions.create(model="helper", prompt="apple?", max_tokens=2)
        assert int(e429.value.response.headers["retry-after"]) >= 1
        server.client(other).completions.create(model="helper", prompt="apple?", max_tokens=2)  # its own bucket
    finally:
        server.stop()
    ws = Workspace.open(ws_dir)
    assert gw.request_count(ws.store, "base") == 3  # shutdown flushed the buffered log; the refused one is not there
    ws.store.close()


def test_a_revoked_key_is_refused_by_the_running_gateway(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """``loopgate key create/list/revoke`` through the CLI while a gateway serves: the revoked key is refused
    within ``key_recheck_s``, the other key still works, and the ledger names who revoked it."""
    import time

    ws_dir = copy_workspace(template_workspace(tmp_path / "t"), tmp_path / "ws")
    made = cli("key", "create", "helper", "--json", "--as", "alice", workspace=ws_dir)
    assert made.code == 0, made.err
    key, key_id = json.loads(made.out)["key"], json.loads(made.out)["id"]
    other = cli("key", "create", "helper", workspace=ws_dir).out.strip()
    server = Server(ws_dir, key_recheck_s=0.2)
    try:
        server.client(key).completions.create(model="helper", prompt="apple?", max_tokens=2)
        listed = json.loads(cli("key", "list", "--json", workspace=ws_dir).out)
        assert [k["id"] for k in listed] == [key_id, key_id + 1] and all("key" not in k for k in listed)
        revoked = cli("key", "revoke", str(key_id), "--as", "bob", workspace=ws_dir)
        assert revoked.code == 0 and f"revoked API key {key_id}" in revoked.out
        time.sleep(0.3)
        with pytest.raises(openai.AuthenticationError, match="unknown or revoked"):
            server.client(key).completions.create(model="helper", prompt="apple?", max_tokens=2)
        server.client(other).completions.create(model="helper", prompt="apple?", max_tokens=2)
    finally:
        server.stop()
    again = cli("key", "revoke", str(key_id), workspace=ws_dir)
    assert again.code == 2 and "already revoked" in again.err
    assert cli("key", "revoke", "999", workspace=ws_dir).code == 2
    assert [k["id"] for k in json.loads(cli("key", "list", "--json", workspace=ws_dir).out)] == [key_id + 1]
    everything = json.loads(cli("key", "list", "--all", "--json", workspace=ws_dir).out)
    assert everything[0]["revoked_at"] is not None
    log = json.loads(cli("audit", "log", "--json", workspace=ws_dir).out)
    assert any(e["kind"] == "gateway.key.revoke" and e["actor"] == "bob" for e in log), log


def test_the_least_recently_used_version_is_unloaded_beyond_max_loaded(tmp_path: Path) -> None:
    """A gateway living through many releases must not hold every version it ever served: with ``max_loaded=1``
    serving another version unloads the idle one (its weights are freed), and asking for it again reloads it."""
    import gc
    import weakref

    ws_dir = copy_workspace(template_workspace(tmp_path / "t"), tmp_path / "ws")
    server = Server(ws_dir, require_keys=False, max_loaded=1)
    try:
        client = server.client()
        first = client.completions.create(model="helper", prompt="apple?", max_tokens=3).choices[0].text
        base = server.gateway.servers["base@1"]
        weights = weakref.ref(base.model)
        client.completions.create(model="plain", prompt="apple?", max_tokens=3)
        assert list(server.gateway.servers) == ["plain@1"] and base.closed
        gc.collect()
        assert weights() is None  # the unloaded version's model is gone from memory, not only from the dict
        again = client.completions.create(model="helper", prompt="apple?", max_tokens=3).choices[0].text
        assert again == first and list(server.gateway.servers) == ["base@1"]
    finally:
        server.stop()


def test_every_answer_is_logged_with_its_version_and_feedback_joins_it(served: tuple[Server, dict[str, str]]
                                                                       ) -> None:
    server, keys = served
    r = server.client(keys["helper"]).completions.create(model="helper", prompt="stone?", max_tokens=4, user="bo")
    status, body = server.post("/feedback", {"request_id": r.id, "score": 1.0, "label": "right"}, keys["helper"])
    assert status == 200 and body["version"] == "base@1", body
    req = gw.request(server.ws.store, r.id)
    assert req is not None and (req.app, req.line, req.version_id, req.channel) == ("helper", "base", "base@1",
                                                                                  "production")
    assert req.prompt == "stone?" and req.output == r.choices[0].text and req.output_tokens >= 1
    assert req.latency_ms > 0 and req.user_hash is not None and req.user_hash != "bo"
    assert [f.request_id for f in gw.feedback(server.ws.store, "base@1")] == [r.id]
    assert server.post("/feedback", {"request_id": "cmpl-nope", "score": 1}, keys["helper"])[0] == 404
    assert server.post("/feedback", {"request_id": r.id, "score": 7}, keys["helper"])[0] == 400
    kinds = [e.kind for e in server.ws.store.ledger()]
    assert "gateway.requests" in kinds and "feedback" in kinds


def test_a_request_past_the_timeout_gets_504(tmp_path: Path) -> None:
    server = Server(copy_workspace(template_workspace(tmp_path / "t"), tmp_path / "ws"), require_keys=False,
                    timeout_s=0.0001)
    try:
        with pytest.raises(openai.APIStatusError) as e:
            server.client("unused").completions.create(model="helper", prompt="apple?", max_tokens=4)
        assert e.value.status_code == 504 and e.value.body["code"] == "timeout"  # type: ignore[index]
    finally:
        server.stop()


def test_key_create_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path, cli: Callable[..., Any]) -> None:
    ws_dir = copy_workspace(template_workspace(tmp_path / "t"), tmp_path / "ws")
    made = cli("key", "create", "helper", workspace=ws_dir)
    key = made.out.strip()
    assert made.code == 0 and key.startswith("lg-") and len(key) > 30
    ws = Workspace.open(ws_dir)
    assert gw.key_app(ws.store, key) == "helper" and gw.key_app(ws.store, key + "x") is None
    with closing(sqlite3.connect(ws_dir / ".loopgate" / "registry.db")) as db:
        stored = "\n".join(db.iterdump())  # every table, every row
    assert key not in stored and gw.key_sha256(key) in stored
    assert all(key not in json.dumps(e.payload) for e in ws.store.ledger())
    ws.store.close()
    unknown = cli("key", "create", "nobody", workspace=ws_dir)
    assert unknown.code == 2 and "unknown line 'nobody'" in unknown.err


def test_a_version_whose_weights_are_damaged_answers_503_and_is_logged_as_an_error(tmp_path: Path) -> None:
    ws_dir = copy_workspace(template_workspace(tmp_path / "t"), tmp_path / "ws")
    ws = Workspace.open(ws_dir)
    weights = ws.store.checkout("plain@1") / "model.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:1000])  # the checkout's file is a link to the stored blob: both break
    ws.store.close()
    server = Server(ws_dir, require_keys=False)
    try:
        with pytest.raises(openai.APIStatusError) as e:
            server.client("unused").completions.create(model="plain", prompt="apple?", max_tokens=4)
        assert e.value.status_code == 503 and e.value.body["code"] == "model_unavailable"  # type: ignore[index]
        server.gateway.flush()
        logged = gw.requests(server.ws.store, "plain@1")
        assert len(logged) == 1 and not logged[0].ok and "plain@1" in (logged[0].error or "")
    finally:
        server.stop()
