"""Bodies a client can send that used to reach the model or crash the route: an empty prompt (a client error,
never a failure of the version that would count against its canary), a lone surrogate, JSON nested too deep, an
integer of 5000 digits. Each is a 4xx with OpenAI's error body, never a 500; a NUL in a prompt is answered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gateway_world import Server, copy_workspace, template_workspace

from loopgate.store import gateway as gw


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    ws_dir = copy_workspace(template_workspace(tmp_path_factory.mktemp("bb-template")),
                            tmp_path_factory.mktemp("bb") / "ws")
    srv = Server(ws_dir, require_keys=False)
    yield srv
    srv.stop()


def _error(status: int, body: dict[str, object]) -> dict[str, object]:
    assert 400 <= status < 500, (status, body)
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"message", "type", "param", "code"}, body
    return err


@pytest.mark.parametrize("body", [
    {"model": "helper", "prompt": ""},
    {"model": "helper", "prompt": ["apple?", ""]},
    {"model": "base:production", "prompt": ""},
])
def test_an_empty_prompt_is_a_client_error_not_a_model_failure(server: Server, body: dict[str, object]) -> None:
    before = len(gw.requests(server.ws.store, "base@1"))
    err = _error(*server.post("/completions", body))
    assert err["code"] == "empty_prompt" and err["param"] == "prompt"
    status, chat = server.post("/chat/completions", {"model": "helper", "messages": [{"role": "user",
                                                                                       "content": ""}]})
    assert _error(status, chat)["code"] == "empty_prompt"
    server.gateway.flush()
    assert len(gw.requests(server.ws.store, "base@1")) == before  # nothing logged, so nothing for the canary


@pytest.mark.parametrize("raw", [
    b'{"model": "helper", "prompt": "\\ud800"}',
    b'{"model": "helper", "prompt": "apple?", "user": "\\udfff"}',
    b'{"model": "helper", "messages": [{"role": "user", "content": "a\\ud83d"}]}',
    b'{"model": "helper", "prompt": "apple?", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
    b'{"model": "helper", "prompt": "apple?", "max_tokens": 1' + b"0" * 5000 + b"}",
    b'{"model": "helper", "prompt": "apple?", "max_tokens": 1e999}',
    b'{"model": "helper", "prompt": "apple?", "max_tokens": NaN}',
])
def test_bodies_that_are_not_text_or_not_numbers_get_a_4xx(server: Server, raw: bytes) -> None:
    for path in ("/completions", "/chat/completions"):
        status, body = server.post(path, raw)
        assert status < 500, (path, status, body)
        _error(status, body)


def test_feedback_bodies_get_a_4xx_too(server: Server) -> None:
    r = server.client().completions.create(model="helper", prompt="apple?", max_tokens=4)
    for raw in (b'{"request_id": "' + r.id.encode() + b'", "score": 1, "label": "\\ud800"}',
                b'{"request_id": "' + r.id.encode() + b'", "score": 1' + b"0" * 5000 + b"}",
                b'{"request_id": "' + r.id.encode() + b'", "score": NaN}',
                b"[" * 30_000 + b"]" * 30_000):
        _error(*server.post("/feedback", raw))


def test_a_nul_in_a_prompt_is_answered_and_logged(server: Server) -> None:
    status, body = server.post("/completions", {"model": "helper", "prompt": "apple\x00?", "max_tokens": 4,
                                                "user": "n\x00l"})
    assert status == 200, body
    server.gateway.flush()
    logged = gw.request(server.ws.store, str(body["id"]))
    assert logged is not None and logged.ok and logged.prompt == "apple\ufffd?"
    assert server.post("/feedback", {"request_id": body["id"], "score": 1.0, "comment": "\x00"})[0] == 200
