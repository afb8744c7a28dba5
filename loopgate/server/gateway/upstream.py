"""Lines served by an upstream OpenAI-compatible server (``serving:`` in ``loopgate.yaml``): vLLM, another
``loopgate serve``, any server speaking ``/v1/completions`` and ``/v1/chat/completions``.

The gateway keeps everything that makes a release safe — keys, the sticky canary split, shadow, the request log,
feedback and the canary analysis — and forwards only generation, with ``httpx`` (pooled connections, one client
per line). Which upstream model answers for a version: ``serving.models[VERSION]`` when listed, else
``serving.model`` with ``{version}``, ``{line}`` and ``{adapter}`` filled in; with ``lora: vllm`` an adapter
version is registered in vLLM under a name carrying its content hash first (:mod:`.upstream_lora`).

What the upstream does counts for the version that was routed there: its latency is the request's latency in
the log, and a failure is logged as an error of that version and channel, so an upstream that fails the canary
fails the canary analysis. A server that cannot be reached or answers 5xx gives the client 503 (a timeout 504)
in OpenAI's error body; a 4xx it answers is passed on with its message (the body was checked here first, so it
is still the upstream's failure to serve, and logged as one).

Streaming is chunked output as on the local path: the upstream is asked without ``stream`` and its answer is
sent as server-sent events once complete. Fields the gateway does not read (``presence_penalty``, …) and
``user`` are not forwarded: the upstream sees the checked request, never who sent it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any, Protocol

from fastapi.responses import JSONResponse, Response, StreamingResponse

from loopgate.server.gateway import render
from loopgate.server.gateway.schemas import ChatRequest, CompletionRequest
from loopgate.server.gateway.service import Gateway, GatewayError, GatewaySettings, Target, render_template
from loopgate.server.gateway.settings import answer_length
from loopgate.server.gateway.upstream_client import UpstreamError, Upstreams
from loopgate.server.gateway.wire import sse


class Served(Protocol):
    """Who answers one request and what its log rows need (``generation.Served``)."""

    @property
    def gateway(self) -> Gateway: ...
    @property
    def rid(self) -> str: ...
    @property
    def target(self) -> Target: ...
    @property
    def version(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def t0(self) -> float: ...
    @property
    def user_hash(self) -> str | None: ...
    @property
    def key_id(self) -> int | None: ...


# ---------------------------------------------------------------------------------------------- one request


def _bad(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, param=param, code="invalid_value")


def _prompts(body: CompletionRequest, target: Target, settings: GatewaySettings) -> tuple[Any, list[str | None]]:
    """(the prompt to forward, each prompt's text for the log) with an app's template applied."""
    raw: Any = body.prompt
    if isinstance(raw, list) and raw and isinstance(raw[0], int):
        raw = [raw]
    raw = raw if isinstance(raw, list) else [raw]
    if len(raw) > settings.max_batch:
        raise _bad(f"prompt: give a string or a list of 1 to {settings.max_batch} strings (or token-id lists)",
                   "prompt")
    if all(isinstance(p, str) for p in raw):
        texts = [render_template(target.template, p) for p in raw]
        return (texts[0] if isinstance(body.prompt, str) else texts), list(texts)
    if target.template != "{input}":
        raise _bad(f"'{target.name}' is an app with a prompt template: send text, not token ids", "prompt")
    return body.prompt, [None] * len(raw)  # token ids: the upstream's tokenizer reads them, not this gateway


def _chat_messages(body: ChatRequest, target: Target) -> tuple[list[dict[str, Any]], list[str | None]]:
    """The messages to forward (an app's template around the last user message) and the text to log."""
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if users:
        last = messages[users[-1]]
        last["content"] = render_template(target.template, last["content"])
    return messages, ["\n".join(f"{m['role']}: {m['content']}" for m in messages)]


def payload(body: CompletionRequest | ChatRequest, target: Target, settings: GatewaySettings
            ) -> tuple[dict[str, Any], list[str | None], int | None]:
    """(the JSON to forward, prompt texts for the log, the sampling seed): the checks ``plan`` makes that need
    no tokenizer, an app's template and decoding defaults, a drawn seed for a sampled request without one."""
    chat = isinstance(body, ChatRequest)
    data = body.model_dump(exclude_none=True, exclude={"model", "user", "stream", "stream_options", "prompt",
                                                       "messages", "max_completion_tokens", "max_tokens"})
    if isinstance(body, ChatRequest):
        data["messages"], texts = _chat_messages(body, target)
        asked = body.max_completion_tokens or body.max_tokens
    else:
        data["prompt"], texts = _prompts(body, target, settings)
        asked = body.max_tokens
    max_new = answer_length(asked, len(texts), body.n, target, settings)
    data["max_tokens"] = max_new
    stop = body.stops()
    data["stop"] = list(target.stop if stop is None else stop)
    if not data["stop"]:
        del data["stop"]
    seed = None
    if body.temperature:  # sampled: the seed is drawn here when not given, so the log and the client know it
        seed = data["seed"] = body.seed if body.seed is not None else secrets.randbelow(2**31)
    if chat and not body.logprobs:
        data.pop("top_logprobs", None)
    return data, texts, seed


def _choice_text(choice: dict[str, Any], chat: bool) -> str:
    if chat:
        return str((choice.get("message") or {}).get("content") or "")
    return str(choice.get("text") or "")


async def answer(s: Served, body: CompletionRequest | ChatRequest, shadow: str | None) -> Response:
    """Answer one routed request through the line's upstream: forward, log each choice, render."""
    gw, chat = s.gateway, isinstance(body, ChatRequest)
    data, texts, seed = payload(body, s.target, gw.settings)
    upstreams: Upstreams = gw.upstreams
    try:
        got = await upstreams.complete(s.target.line, s.version, data, chat)
    except UpstreamError as e:  # an error of the version routed here, for the canary analysis
        gw.log(s.rid, s.target, s.version, s.channel, s.t0, 0, 0, texts[0], None, user_hash=s.user_hash,
               key_id=s.key_id, error=e.message, seed=seed)
        raise GatewayError(e.status, e.message, e.type, code=e.code) from None
    choices = sorted(got["choices"], key=lambda c: int(c.get("index", 0)))
    usage: dict[str, Any] = got["usage"] if isinstance(got.get("usage"), dict) else {}
    prompt_tokens, done = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    ids = [s.rid] if len(choices) == 1 else [f"{s.rid}-{i}" for i in range(len(choices))]
    for i, (cid, c) in enumerate(zip(ids, choices, strict=True)):
        c["index"], c["request_id"] = i, cid
        gw.log(cid, s.target, s.version, s.channel, s.t0, prompt_tokens // max(1, len(texts)),
               done // len(choices), texts[min(i // body.n, len(texts) - 1)], _choice_text(c, chat),
               user_hash=s.user_hash, key_id=s.key_id, seed=seed)
    if shadow is not None:
        upstreams.background(_shadow(s, shadow, data, texts[0], chat))
    st = gw.state(s.target.line)
    await upstreams.sync_adapters(s.target.line, st.production, st.canary)
    return _respond(s, body, got, choices, ids, seed)


async def _shadow(s: Served, version: str, data: dict[str, Any], text: str | None, chat: bool) -> None:
    """``version`` answers the same request upstream; logged as a shadow answer (or error), never returned."""
    t0, rid = time.perf_counter(), "shadow-" + uuid.uuid4().hex
    try:
        got = await s.gateway.upstreams.complete(s.target.line, version, data, chat)
        c = got["choices"][0] if got["choices"] else {}
        s.gateway.log(rid, s.target, version, "canary", t0, 0, 0, text, _choice_text(c, chat),
                      user_hash=s.user_hash, shadow=True)
    except Exception as e:  # a failing shadow is an error the canary analysis counts
        s.gateway.log(rid, s.target, version, "canary", t0, 0, 0, text, None, user_hash=s.user_hash, shadow=True,
                      error=getattr(e, "message", None) or str(e) or type(e).__name__)


def _respond(s: Served, body: CompletionRequest | ChatRequest, got: dict[str, Any],
             choices: list[dict[str, Any]], ids: list[str], seed: int | None) -> Response:
    chat = isinstance(body, ChatRequest)
    head: dict[str, Any] = {"id": s.rid, "created": int(got.get("created") or time.time()), "model": body.model,
                            "system_fingerprint": s.version, **({"seed": seed} if seed is not None else {})}
    headers = {"x-request-id": s.rid, "x-loopgate-version": s.version, "x-loopgate-channel": s.channel,
               "x-loopgate-choice-ids": ",".join(ids), **({"x-loopgate-seed": str(seed)} if seed is not None else {})}
    usage = got.get("usage")
    if body.stream:
        include = body.stream_options is not None and body.stream_options.include_usage
        for c in choices:
            c.setdefault("logprobs", None)
            c.setdefault("finish_reason", "stop")
        parts = [[t] if (t := _choice_text(c, chat)) else [] for c in choices]
        events = render.stream_events(head, choices, parts, chat=chat,
                                      usage=usage if include and isinstance(usage, dict) else None)
        return StreamingResponse(sse(events), media_type="text/event-stream", headers=headers)
    return JSONResponse({**got, **head, "object": "chat.completion" if chat else "text_completion",
                         "choices": choices}, headers=headers)
