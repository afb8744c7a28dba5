"""Upstream backends (#22 item 2): a line served by another OpenAI-compatible server behind the gateway.

The upstream is a second real gateway (uvicorn on its own port, its own workspace and registry) serving the
good model as ``base:production`` and the bad one as ``base:canary``. The front gateway's ``base`` line holds
the same two versions (base@1 in production, base@2 as a half-traffic canary) and maps them to those upstream
models in ``serving.models``: it keeps keys, the split, logging, feedback and the canary analysis, the upstream
only generates. vLLM's LoRA endpoints are exercised against a small FastAPI app that implements them (vLLM itself
is not run here).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from gateway_world import Server, copy_workspace, model, template_workspace, traffic

from loopgate import loop
from loopgate.errors import SpecError
from loopgate.loop import canary as canary_loop
from loopgate.loop.workspace import Workspace
from loopgate.spec import parse_ecosystem
from loopgate.store import gateway as gw


def _canary_world(tmp: Path, name: str) -> Path:
    """A copy of the gateway world with the bad model released as base@2, the live canary."""
    ws_dir = copy_workspace(template_workspace(tmp / "template"), tmp / name)
    ws = Workspace.open(ws_dir)
    loop.register_model(ws, "base", model("bad"))
    assert loop.release(ws, "base@2", actor="alice").released
    assert ws.store.channels("base") == {"staging": None, "canary": "base@2", "production": "base@1"}
    ws.store.close()
    return ws_dir


def _serve_through(ws_dir: Path, serving: dict[str, Any]) -> None:
    spec = yaml.safe_load((ws_dir / "loopgate.yaml").read_text())
    spec["lines"]["base"]["serving"] = serving
    (ws_dir / "loopgate.yaml").write_text(yaml.safe_dump(spec))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """(upstream, front): the front's base@1 / base@2 are the upstream's base:production / base:canary."""
    upstream = Server(_canary_world(tmp_path, "upstream"), require_keys=False, burst=10_000)
    front_dir = _canary_world(tmp_path, "front")
    _serve_through(front_dir, {"base_url": upstream.url, "timeout_s": 20,
                               "models": {"base@1": "base:production", "base@2": "base:canary"}})
    front = Server(front_dir, require_keys=False, burst=10_000)
    yield upstream, front
    front.stop()
    if upstream.thread.is_alive():
        upstream.stop()


def _log(server: Server, *versions: str) -> list[gw.RequestRecord]:
    """The request log of ``versions`` on ``server`` (flushed first)."""
    server.gateway.flush()
    return [r for v in versions for r in gw.requests(server.ws.store, v)]


def _ask(front: Server, users: range, *, rate: bool) -> list[tuple[str, bool]]:
    """One request per user on the app; (version that answered, whether the answer was right), rated if ``rate``."""
    client = front.client("unused")
    facts = traffic()

    def one(u: int) -> tuple[str, bool]:
        prompt, answer = facts[u % len(facts)]
        raw = client.completions.with_raw_response.create(model="helper", prompt=prompt, max_tokens=4,
                                                          user=f"user-{u}")
        r = raw.parse()
        right = r.choices[0].text == answer
        if rate:
            status, body = front.post("/feedback", {"request_id": r.id, "score": float(right)})
            assert status == 200, body
        return raw.headers["x-loopgate-version"], right

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, users))


def test_a_line_served_upstream_splits_its_canary_and_rolls_it_back_on_bad_feedback(
        pair: tuple[Server, Server]) -> None:
    upstream, front = pair
    client = front.client("unused")
    # answered through the front, generated upstream: the front has loaded no model, the upstream logged it
    raw = client.chat.completions.with_raw_response.create(model="base:production",
                                                           messages=[{"role": "user", "content": "tiger?"}],
                                                           max_tokens=1)
    assert raw.headers["x-loopgate-version"] == "base@1" and raw.parse().choices[0].message.content == "x"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="base:canary", prompt="tiger?", max_tokens=1, stream=True) if c.choices)
    assert streamed == "y"  # the bad model's letter for tiger (shifted), through the canary's upstream model
    assert front.gateway.servers == {}
    upstream.gateway.flush()
    up_log = _log(upstream, "base@1", "base@2")
    assert {(r.version_id, r.channel) for r in up_log} == {("base@1", "production"), ("base@2", "canary")}

    # the split: half the users meet the canary, and each version answers as its upstream model does
    split = _ask(front, range(2000, 2040), rate=False)
    canary = [right for v, right in split if v == "base@2"]
    assert 0.25 < len(canary) / len(split) < 0.75
    assert not any(canary) and all(right for v, right in split if v == "base@1")
    assert front.ws.store.channels("base")["canary"] == "base@2"

    # bad feedback on the canary's answers rolls it back (the existing canary analysis, fed by the front's log)
    _ask(front, range(120), rate=True)
    front.gateway.flush()
    assert front.ws.store.channels("base") == {"staging": None, "canary": "base@1", "production": "base@1"}
    check = next(e for e in front.ws.store.ledger() if e.kind == "canary.check"
                 and e.payload["outcome"] == "rolled_back")
    assert check.subject == "base@2"
    assert {v for v, _ in _ask(front, range(3000, 3010), rate=False)} == {"base@1"}


def test_an_upstream_outage_is_503_in_openais_body_and_counts_as_canary_errors(pair: tuple[Server, Server]) -> None:
    upstream, front = pair
    assert {v for v, _ in _ask(front, range(40), rate=False)} == {"base@1", "base@2"}  # healthy traffic first
    upstream.stop()
    statuses: list[int] = []
    for u in range(40, 80):
        status, body = front.post("/completions", {"model": "helper", "prompt": "tiger?", "user": f"user-{u}"})
        statuses.append(status)
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["code"] == "upstream_unavailable" and "retry later" in body["error"]["message"]
    assert set(statuses) == {503}
    front.gateway.flush()
    failed = [r for r in _log(front, "base@1", "base@2") if not r.ok]
    assert len(failed) == 40 and {r.version_id for r in failed} == {"base@1", "base@2"}
    analysis = canary_loop.status(front.ws, "base").analysis
    assert analysis is not None
    errors = next(m for m in analysis.metrics if m.name == "error_rate")
    # about half of the 80 requests met the canary, and about half of those failed: far from both 0 and 1
    assert errors.canary_n >= 20 and 0.2 < errors.canary_rate < 0.8, errors


def test_the_sampling_seed_is_logged_on_both_paths(pair: tuple[Server, Server]) -> None:
    upstream, front = pair
    client = front.client("unused")
    # upstream path: the front draws the seed, forwards it and logs it; the upstream logs the same seed
    up = client.completions.create(model="base:production", prompt="tiger?", max_tokens=3, temperature=1.0)
    assert isinstance(up.model_extra and up.model_extra.get("seed"), int)
    # local path (plain is not served upstream): the client's seed is logged
    local = client.completions.create(model="plain", prompt="tiger?", max_tokens=3, temperature=1.0, seed=4321)
    greedy = client.completions.create(model="plain", prompt="tiger?", max_tokens=3)
    front.gateway.flush()
    upstream.gateway.flush()
    logged = {r.id: r.seed for r in _log(front, "base@1", "plain@1")}
    assert logged[up.id] == up.model_extra["seed"] and logged[local.id] == 4321 and logged[greedy.id] is None
    assert [r.seed for r in _log(upstream, "base@1")] == [up.model_extra["seed"]]


def test_serving_is_validated() -> None:
    base = {"lines": {"m": {"tier": "foundation"}}}
    for serving, says in (({"base_url": "file:///etc/passwd", "model": "x"}, "must be an http(s) URL"),
                          ({"base_url": "http://h/v1"}, "needs 'model:'"),
                          ({"base_url": "http://h/v1", "model": "x", "api_key_env": "A-B"}, "environment variable"),
                          ({"base_url": "http://h/v1", "model": "x", "backend": "grpc"}, "backend")):
        with pytest.raises(SpecError, match=re.escape(says)):
            parse_ecosystem({"lines": {"m": {"tier": "foundation", "serving": serving}}})
    parse_ecosystem(base | {"lines": {"m": {"tier": "foundation", "serving": {"base_url": "https://h/v1",
                                                                             "model": "{line}-{version}"}}}})


# ------------------------------------------------------------------------------------- vLLM's LoRA endpoints


class FakeVllm:
    """A real HTTP server with vLLM's runtime LoRA endpoints and a completions route answering only for the base
    model and the adapters it holds; it records every load and unload."""

    def __init__(self) -> None:
        import socket

        import uvicorn
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        self.calls: list[tuple[str, dict[str, str]]] = []
        self.loaded: dict[str, str] = {}
        app = FastAPI()

        @app.post("/v1/load_lora_adapter")
        async def load(body: dict[str, str]) -> Any:
            self.calls.append(("load", body))
            if body["lora_name"] in self.loaded:
                return JSONResponse({"error": {"message": "already been loaded"}}, status_code=400)
            assert (Path(body["lora_path"]) / "adapter_config.json").is_file()
            self.loaded[body["lora_name"]] = body["lora_path"]
            return JSONResponse(f"Success: LoRA adapter '{body['lora_name']}' added successfully.")

        @app.post("/v1/unload_lora_adapter")
        async def unload(body: dict[str, str]) -> Any:
            self.calls.append(("unload", body))
            if self.loaded.pop(body["lora_name"], None) is None:
                return JSONResponse({"error": {"message": "not found"}}, status_code=404)
            return JSONResponse("Success")

        @app.post("/v1/completions")
        async def completions(body: dict[str, Any]) -> Any:
            if body["model"] not in self.loaded:
                return JSONResponse({"error": {"message": f"model {body['model']} does not exist",
                                               "type": "NotFoundError", "code": 404}}, status_code=404)
            return {"id": "cmpl-x", "object": "text_completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "text": body["model"], "logprobs": None, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}}

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


LORA_SPEC = """\
name: lora
lines:
  base: {tier: foundation}
  alpha: {tier: industrial, parent: base}
policy:
  defaults:
    plasticity: {probe_steps: 1}
    cost: {max_latency_p95_ratio: null, max_cost_per_1k_ratio: null, max_param_growth: null,
           max_mean_output_length_ratio: null}
"""


def _adapter(base_dir: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from loopgate.models import load_model

    torch.manual_seed(seed)
    peft = get_peft_model(load_model(base_dir).model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                 init_lora_weights=False))
    peft.save_pretrained(str(out))
    return out


def test_vllm_lora_adapters_follow_the_channels_under_content_hashed_names(tmp_path: Path,
                                                                          tiny_model_dir: Path) -> None:
    vllm = FakeVllm()
    ws, _ = Workspace.init(tmp_path / "ws", LORA_SPEC)
    base = loop.register_model(ws, "base", tiny_model_dir).id
    assert loop.release(ws, base, actor="alice", propagate=False).released
    first = loop.register_model(ws, "alpha", _adapter(tiny_model_dir, tmp_path / "a1", 1), base=base).id
    assert loop.release(ws, first, actor="alice", propagate=False).released
    spec = yaml.safe_load((tmp_path / "ws" / "loopgate.yaml").read_text())
    spec["lines"]["alpha"]["serving"] = {"base_url": vllm.url, "lora": "vllm"}
    (tmp_path / "ws" / "loopgate.yaml").write_text(yaml.safe_dump(spec))
    ws.store.close()
    front = Server(tmp_path / "ws", require_keys=False, state_ttl_s=0.0)
    try:
        client = front.client("unused")
        name1 = client.completions.create(model="alpha", prompt="hi", max_tokens=1).choices[0].text
        files1 = front.ws.store.version(first).files
        from loopgate.hashing import sha256_json

        assert name1 == f"alpha-v1-{sha256_json(files1)[:12]}"
        assert [c for c, _ in vllm.calls] == ["load"] and vllm.calls[0][1]["lora_name"] == name1
        client.completions.create(model="alpha", prompt="again", max_tokens=1)  # loaded once, not per request
        assert len(vllm.calls) == 1

        second = loop.register_model(front.ws, "alpha", _adapter(tiny_model_dir, tmp_path / "a2", 2), base=base).id
        assert loop.release(front.ws, second, actor="alice", propagate=False).released
        name2 = client.completions.create(model="alpha", prompt="hi", max_tokens=1).choices[0].text
        assert name2.startswith("alpha-v2-") and name2 != name1 and name2 in vllm.loaded
        # no channel holds the first version now: its adapter was unloaded on the request after the move
        assert front.ws.store.channels("alpha") == {"staging": None, "canary": None, "production": second}
        assert vllm.calls[1:] == [("load", {"lora_name": name2, "lora_path": vllm.loaded[name2]}),
                                  ("unload", {"lora_name": name1})]
        assert set(vllm.loaded) == {name2}
    finally:
        front.stop()
        vllm.stop()


def test_json_bodies_only_reach_the_upstream(pair: tuple[Server, Server]) -> None:
    """What the front refuses never reaches the upstream: a bad body is the front's 400, logged nowhere."""
    upstream, front = pair
    status, body = front.post("/completions", {"model": "helper", "prompt": "x", "max_tokens": 10_000})
    assert status == 400 and body["error"]["param"] == "max_tokens"
    status, body = front.post("/completions", b"{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    upstream.gateway.flush()
    assert _log(upstream, "base@1", "base@2") == []
    assert json.dumps(body)  # OpenAI's body, serialisable as sent
