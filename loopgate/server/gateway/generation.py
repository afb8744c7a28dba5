"""``POST /v1/completions`` and ``POST /v1/chat/completions``: authorise, route to a version, plan, answer, log,
render.

Each choice is logged as one request: with one choice its id is the response's ``id``; with several (a list
of prompts, or ``n`` > 1) choice ``i`` is ``{id}-{i}`` — the ``request_id`` field of each choice and the
``x-loopgate-choice-ids`` header name them, and feedback takes either that id or the response id with ``index``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from loopgate.server.gateway import render, upstream
from loopgate.server.gateway.batching import VersionServer
from loopgate.server.gateway.plan import Plan, check_body, plan
from loopgate.server.gateway.render import Answered
from loopgate.server.gateway.schemas import ChatRequest, CompletionRequest
from loopgate.server.gateway.service import Gateway, GatewayError, Target
from loopgate.server.gateway.wire import pieces, read_body, sse, user_key


@dataclass(frozen=True)
class _Served:
    """Who answers one request, and what its log rows need."""

    gateway: Gateway
    rid: str
    target: Target
    version: str
    channel: str
    t0: float
    user_hash: str | None
    key_id: int | None

    def log_error(self, prompt_tokens: int, prompt: str | None, error: str) -> None:
        self.gateway.log(self.rid, self.target, self.version, self.channel, self.t0, prompt_tokens, 0, prompt, None,
                         user_hash=self.user_hash, key_id=self.key_id, error=error)


def _refuse_empty(body: CompletionRequest | ChatRequest) -> None:
    """Nothing to answer is the client's error, never the model's: refused before anything is logged."""
    if isinstance(body, ChatRequest):
        if not any(m.text() for m in body.messages):
            raise GatewayError(400, "every message is empty", param="messages", code="empty_prompt")
    elif body.prompt == "" or (isinstance(body.prompt, list) and any(p in ("", []) for p in body.prompt)):
        raise GatewayError(400, "the prompt is empty", param="prompt", code="empty_prompt")


async def _answer(s: _Served, srv: VersionServer, p: Plan) -> list[Answered]:
    """Every prompt's choices, flattened in OpenAI's order (prompt by prompt, then ``n``), each logged."""
    try:
        per_prompt = await asyncio.gather(*(s.gateway.answer(srv, job) for job in p.jobs))
    except GatewayError as e:
        s.log_error(p.prompt_tokens, p.texts[0], e.message)
        raise
    except Exception as e:  # the model failed: logged as an error of this version, answered as a 500
        s.log_error(p.prompt_tokens, p.texts[0], str(e) or type(e).__name__)
        raise GatewayError(500, f"the model failed: {e}", "server_error") from None
    flat = [(text, job, c) for text, job, cs in zip(p.texts, p.jobs, per_prompt, strict=True) for c in cs]
    out = []
    for i, (text, job, c) in enumerate(flat):
        cid = s.rid if len(flat) == 1 else f"{s.rid}-{i}"
        s.gateway.log(cid, s.target, s.version, s.channel, s.t0, len(job.prompt_ids), len(c.token_ids), text,
                      c.text, user_hash=s.user_hash, key_id=s.key_id, seed=p.seed)
        out.append(Answered(cid, text, c))
    return out


def _respond(s: _Served, srv: VersionServer, body: CompletionRequest | ChatRequest, p: Plan,
             answered: list[Answered]) -> Response:
    chat = isinstance(body, ChatRequest)
    done = sum(len(a.choice.token_ids) for a in answered)
    usage = {"prompt_tokens": p.prompt_tokens, "completion_tokens": done, "total_tokens": p.prompt_tokens + done}
    head: dict[str, Any] = {"id": s.rid, "created": int(time.time()), "model": body.model,
                            "system_fingerprint": s.version}
    if p.seed is not None:
        head["seed"] = p.seed
    headers = {"x-request-id": s.rid, "x-loopgate-version": s.version, "x-loopgate-channel": s.channel,
               "x-loopgate-choice-ids": ",".join(a.choice_id for a in answered),
               **({"x-loopgate-seed": str(p.seed)} if p.seed is not None else {})}
    logprobs = p.jobs[0].top_logprobs is not None
    if isinstance(body, ChatRequest):
        choices = [render.chat_choice(srv.tokenizer, i, a, logprobs=logprobs) for i, a in enumerate(answered)]
    else:
        choices = [render.completion_choice(srv.tokenizer, i, a, echo=body.echo, logprobs=logprobs)
                   for i, a in enumerate(answered)]
    if body.stream:
        parts = [([a.prompt_text] if p.jobs[0].echo else []) + pieces(srv.tokenizer, a.choice.text)
                 for a in answered]
        include = body.stream_options is not None and body.stream_options.include_usage
        events = render.stream_events(head, choices, parts, chat=chat, usage=usage if include else None)
        return StreamingResponse(sse(events), media_type="text/event-stream", headers=headers)
    return JSONResponse({**head, "object": "chat.completion" if chat else "text_completion", "choices": choices,
                         "usage": usage}, headers=headers)


async def handle(gateway: Gateway, request: Request, chat: bool) -> Response:
    """Answer one completion (``chat`` False) or chat completion request."""
    t0 = time.perf_counter()
    caller = gateway.authorise(request.headers.get("authorization"))
    body = await read_body(request, gateway, ChatRequest if chat else CompletionRequest)
    target = gateway.target(body.model, caller.app)
    _refuse_empty(body)
    check_body(body, gateway.settings, chat)
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    split_key, user_hash = user_key(body.user, rid)
    version, channel, shadow = gateway.route(target, split_key, caller.key_id)
    s = _Served(gateway, rid, target, version, channel, t0, user_hash, caller.key_id)
    if gateway.upstreams.spec(target.line) is not None:  # ``serving:`` in loopgate.yaml: forwarded
        return await upstream.answer(s, body, shadow)
    try:
        srv = await gateway.server(version)
    except GatewayError as e:  # the version cannot serve: an error of that version, for the canary analysis
        s.log_error(0, None, e.message)
        raise
    p = plan(body, srv, target, gateway.settings, chat)
    answered = await _answer(s, srv, p)
    job = p.jobs[0]
    if shadow is not None and job.max_new_tokens > 0:
        for text in p.texts:
            gateway.shadow(target, shadow, text, job.max_new_tokens, job.stop, user_hash)
    return _respond(s, srv, body, p, answered)
