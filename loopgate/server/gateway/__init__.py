"""The OpenAI-compatible gateway: ``POST /v1/completions``, ``POST /v1/chat/completions`` (``stream: true``
as server-sent events), ``GET /v1/models`` and ``POST /v1/feedback``.

`router(ws)` returns the APIRouter that :func:`loopgate.server.app.create_app` mounts. The routes parse and
render; :class:`~loopgate.server.gateway.service.Gateway` holds the loaded versions and guards, and the
service layer decides which version answers and what the canary analysis concludes.

Streaming is *chunked output*, not token-by-token generation: a streamed request is generated in the same
dynamic batch as every other (``TextIteratorStreamer`` serves one sequence at a time, which would give up
batching), then sent as one SSE event per token of the answer. The first event therefore arrives when the
whole answer is ready.

Nothing a client sends reaches a shell, a file path or pickle: the body is JSON validated by pydantic, the
``model`` is looked up among the spec's lines, prompts only ever reach the tokenizer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from loopgate.loop.workspace import Workspace
from loopgate.server.gateway.schemas import ChatRequest, CompletionRequest, FeedbackRequest, error_body
from loopgate.server.gateway.service import Gateway, GatewayError, GatewaySettings, Target, render_template

__all__ = ["Gateway", "GatewaySettings", "router"]


def _error(e: GatewayError) -> JSONResponse:
    return JSONResponse(error_body(e.message, e.type, param=e.param, code=e.code), status_code=e.status,
                        headers=e.headers)


async def _body(request: Request, gateway: Gateway, model: type[BaseModel]) -> Any:
    limit = gateway.settings.max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"request body of {declared} bytes is over the limit of {limit} bytes",
                           code="request_too_large")
    raw = b""
    async for chunk in request.stream():  # stop reading as soon as the limit is passed
        raw += chunk
        if len(raw) > limit:
            raise GatewayError(413, f"request body is over the limit of {limit} bytes", code="request_too_large")
    try:
        # ValueError covers JSONDecodeError and an integer past Python's digit limit; RecursionError deep nesting
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise GatewayError(400, f"the body is not valid JSON: {str(e)[:200]}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise GatewayError(400, "the body must be a JSON object", code="invalid_json")
    try:  # JSON may escape a lone surrogate ("\ud800"): not text any tokenizer, hash or database can take
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise GatewayError(400, "the body holds a lone UTF-16 surrogate (such as \\ud800): not valid Unicode "
                           "text", code="invalid_value") from None
    except RecursionError:
        raise GatewayError(400, "the body is nested too deeply", code="invalid_json") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GatewayError(400, f"{where}: {first['msg']}", param=where or None, code="invalid_value") from None
    except RecursionError:
        raise GatewayError(400, "the body is nested too deeply", code="invalid_json") from None


def _user_key(user: str | None, request_id: str) -> tuple[str, str | None]:
    """(what the sticky canary split hashes with the API key, the user hash kept in the log)."""
    if user:
        h = hashlib.sha256(user.encode()).hexdigest()
        return h, h
    return request_id, None


def _sse(events: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    async def gen() -> AsyncGenerator[bytes, None]:
        for ev in events:
            yield f"data: {json.dumps(ev, ensure_ascii=False)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return gen()


def _pieces(tokenizer: Any, text: str) -> list[str]:
    """The answer cut at token boundaries (decoded incrementally, so a character split over tokens stays whole)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    out, prev = [], ""
    for i in range(1, len(ids) + 1):
        cur = tokenizer.decode(ids[:i], skip_special_tokens=True)
        if cur != prev and not cur.endswith("\ufffd"):
            out.append(cur[len(prev):])
            prev = cur
    if prev != text:  # what incremental decoding could not reproduce goes in one last piece
        out.append(text[len(prev):] if text.startswith(prev) else text)
    return [p for p in out if p]


def router(ws: Workspace, settings: GatewaySettings | None = None) -> APIRouter:
    gateway = Gateway(ws, settings or GatewaySettings())

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        for srv in list(gateway.servers.values()):
            await srv.close()
        gateway.close()

    r = APIRouter(prefix="/v1", lifespan=lifespan)
    r.gateway = gateway  # type: ignore[attr-defined]  # for tests and benchmarks: the loaded servers' batch stats

    async def generation(request: Request, chat: bool) -> Response:
        t0 = time.perf_counter()
        caller = gateway.authorise(request.headers.get("authorization"))
        body = await _body(request, gateway, ChatRequest if chat else CompletionRequest)
        target: Target = gateway.target(body.model, caller.app)
        # nothing to answer is the client's error, never the model's: refused before anything is logged
        if (chat and not any(m.text() for m in body.messages)) or (
                not chat and (body.prompt == "" or (isinstance(body.prompt, list) and "" in body.prompt))):
            raise GatewayError(400, "the prompt is empty" if not chat else "every message is empty",
                               param="messages" if chat else "prompt", code="empty_prompt")
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        split_key, user_hash = _user_key(body.user, rid)
        version, channel, shadow = gateway.route(target, split_key, caller.key_id)
        k = caller.key_id
        try:
            srv = await gateway.server(version)
        except GatewayError as e:  # the version cannot serve: an error of that version, for the canary analysis
            gateway.log(rid, target, version, channel, t0, 0, 0, None, None, user_hash=user_hash, key_id=k,
                        error=e.message)
            raise
        max_new = (getattr(body, "max_completion_tokens", None) or body.max_tokens or target.max_new_tokens)
        if max_new > gateway.settings.max_tokens:
            raise GatewayError(400, f"max_tokens {max_new} is over this gateway's limit of "
                               f"{gateway.settings.max_tokens}", param="max_tokens", code="invalid_value")
        stop = body.stops()
        stop = target.stop if stop is None else stop
        if chat:
            if not getattr(srv.tokenizer, "chat_template", None):
                raise GatewayError(400, f"the model behind '{body.model}' ({version}) has no chat template; use "
                                   "/v1/completions, or register a tokenizer with a chat_template",
                                   param="messages", code="no_chat_template")
            messages = [{"role": m.role, "content": m.text()} for m in body.messages]
            text = srv.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            prompts = [render_template(target.template, str(text))]
        else:
            raw = body.prompt if isinstance(body.prompt, list) else [body.prompt]
            if not raw or len(raw) > gateway.settings.max_batch:
                raise GatewayError(400, f"prompt: give a string or a list of 1 to {gateway.settings.max_batch} "
                                   "strings", param="prompt")
            prompts = [render_template(target.template, p) for p in raw]
        if not all(prompts):  # an app template of just "{input}", or a chat template that renders nothing
            raise GatewayError(400, "the prompt is empty", param="messages" if chat else "prompt", code="empty_prompt")
        counts = [srv.count_tokens(p) for p in prompts]
        if srv.max_positions and max(counts) + max_new > srv.max_positions:
            raise GatewayError(400, f"this model's context is {srv.max_positions} tokens; the prompt has "
                               f"{max(counts)} and max_tokens asks for {max_new}", param="prompt",
                               code="context_length_exceeded")
        try:
            gens = await asyncio.gather(*(gateway.answer(srv, p, max_new, stop) for p in prompts))
        except GatewayError as e:
            gateway.log(rid, target, version, channel, t0, sum(counts), 0, prompts[0], None, user_hash=user_hash,
                        key_id=k, error=e.message)
            raise
        except Exception as e:  # the model failed: logged as an error of this version, answered as a 500
            gateway.log(rid, target, version, channel, t0, sum(counts), 0, prompts[0], None, user_hash=user_hash,
                        key_id=k, error=str(e) or type(e).__name__)
            raise GatewayError(500, f"the model failed: {e}", "server_error") from None
        for i, (p, g) in enumerate(zip(prompts, gens, strict=True)):
            gateway.log(rid if len(prompts) == 1 else f"{rid}-{i}", target, version, channel, t0,
                        counts[i], g.output_tokens, p, g.text, user_hash=user_hash, key_id=k)
        if shadow is not None:
            for p in prompts:
                gateway.shadow(target, shadow, p, max_new, stop, user_hash)
        created = int(time.time())
        usage = {"prompt_tokens": sum(counts), "completion_tokens": sum(g.output_tokens for g in gens),
                 "total_tokens": sum(counts) + sum(g.output_tokens for g in gens)}
        finish = ["length" if g.output_tokens >= max_new else "stop" for g in gens]
        headers = {"x-request-id": rid, "x-loopgate-version": version, "x-loopgate-channel": channel}
        name = body.model
        if body.stream:
            events: list[dict[str, Any]] = []
            for i, g in enumerate(gens):
                if chat:
                    events.append({"id": rid, "object": "chat.completion.chunk", "created": created, "model": name,
                                   "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                                "finish_reason": None}]})
                for piece in _pieces(srv.tokenizer, g.text):
                    if chat:
                        events.append({"id": rid, "object": "chat.completion.chunk", "created": created,
                                       "model": name, "choices": [{"index": i, "delta": {"content": piece},
                                                                   "finish_reason": None}]})
                    else:
                        events.append({"id": rid, "object": "text_completion", "created": created, "model": name,
                                       "choices": [{"index": i, "text": piece, "logprobs": None,
                                                    "finish_reason": None}]})
                last: dict[str, Any] = ({"index": i, "delta": {}, "finish_reason": finish[i]} if chat else
                                        {"index": i, "text": "", "logprobs": None, "finish_reason": finish[i]})
                events.append({"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                               "created": created, "model": name, "choices": [last]})
            return StreamingResponse(_sse(events), media_type="text/event-stream", headers=headers)
        if chat:
            choices: list[dict[str, Any]] = [
                {"index": i, "message": {"role": "assistant", "content": g.text}, "finish_reason": finish[i],
                 "logprobs": None} for i, g in enumerate(gens)]
            obj = "chat.completion"
        else:
            choices = [{"index": i, "text": g.text, "logprobs": None, "finish_reason": finish[i]}
                       for i, g in enumerate(gens)]
            obj = "text_completion"
        return JSONResponse({"id": rid, "object": obj, "created": created, "model": name, "choices": choices,
                             "usage": usage, "system_fingerprint": version}, headers=headers)

    @r.post("/completions")
    async def completions(request: Request) -> Response:
        try:
            return await generation(request, chat=False)
        except GatewayError as e:
            return _error(e)

    @r.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            return await generation(request, chat=True)
        except GatewayError as e:
            return _error(e)

    @r.post("/feedback")
    async def feedback(request: Request) -> Response:
        try:
            caller = gateway.authorise(request.headers.get("authorization"), feedback=True)
            body = await _body(request, gateway, FeedbackRequest)
            out = await asyncio.to_thread(gateway.feedback, body.request_id, body.score, body.label, body.comment,
                                          caller, body.index)
            return JSONResponse(out)
        except GatewayError as e:
            return _error(e)

    @r.get("/models")
    async def models(request: Request) -> Response:
        try:
            key_app = gateway.authorise(request.headers.get("authorization")).app
        except GatewayError as e:
            return _error(e)
        names = [n for n in ws.eco.lines if key_app is None or n == key_app]
        return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "created": 0,
                                                         "owned_by": "loopgate"} for n in names]})

    routes = {"completions": "POST", "chat/completions": "POST", "feedback": "POST", "models": "GET"}

    # last, so it only sees what no route above took: OpenAI clients parse {"error": …} bodies, not FastAPI's
    @r.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def unknown(request: Request, rest: str) -> Response:
        if rest in routes:
            return _error(GatewayError(405, f"{request.method} is not allowed on /v1/{rest}; use {routes[rest]}",
                                       code="method_not_allowed", headers={"Allow": routes[rest]}))
        return _error(GatewayError(404, f"unknown request URL: {request.method} /v1/{rest}; the gateway serves "
                                   "/v1/completions, /v1/chat/completions, /v1/feedback and /v1/models",
                                   code="unknown_url"))

    return r
