"""The OpenAI-compatible gateway: ``POST /v1/completions`` (``echo`` and ``logprobs`` as lm-eval and vLLM use
them, token-id prompts), ``POST /v1/chat/completions`` (``stream: true`` as server-sent events), ``GET /v1/models``
and ``POST /v1/feedback``. ``/v1/responses`` is not served: a 404 saying to use chat completions.

`router(ws)` returns the APIRouter that :func:`loopgate.server.app.create_app` mounts. The routes parse
(:mod:`.wire`), plan (:mod:`.plan`), answer (:mod:`.generation`, :mod:`.decoding`, :mod:`.scoring`) and render
(:mod:`.render`); :class:`~loopgate.server.gateway.service.Gateway` holds the loaded versions and guards, and the
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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from loopgate.loop.workspace import Workspace
from loopgate.server.gateway import generation
from loopgate.server.gateway.schemas import FeedbackRequest
from loopgate.server.gateway.service import Gateway, GatewayError, GatewaySettings
from loopgate.server.gateway.wire import error, read_body

__all__ = ["Gateway", "GatewaySettings", "router"]


ROUTES = {"completions": "POST", "chat/completions": "POST", "feedback": "POST", "models": "GET"}


def router(ws: Workspace, settings: GatewaySettings | None = None) -> APIRouter:
    """The gateway's routes under ``/v1``, over one :class:`Gateway` (closed with the app)."""
    gateway = Gateway(ws, settings or GatewaySettings())

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        for srv in list(gateway.servers.values()):
            await srv.close()
        await gateway.bases.close()
        await gateway.upstreams.close()
        gateway.close()

    r = APIRouter(prefix="/v1", lifespan=lifespan)
    r.gateway = gateway  # type: ignore[attr-defined]  # for tests and benchmarks: the loaded servers' batch stats
    _generation_routes(r, gateway)
    _feedback_and_models(r, gateway)
    # last, so it only sees what no route above took: OpenAI clients parse {"error": …} bodies, not FastAPI's
    r.add_api_route("/{rest:path}", unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                    include_in_schema=False)
    return r


def _generation_routes(r: APIRouter, gateway: Gateway) -> None:
    @r.post("/completions")
    async def completions(request: Request) -> Response:
        try:
            return await generation.handle(gateway, request, chat=False)
        except GatewayError as e:
            return error(e)

    @r.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            return await generation.handle(gateway, request, chat=True)
        except GatewayError as e:
            return error(e)


def _feedback_and_models(r: APIRouter, gateway: Gateway) -> None:
    @r.post("/feedback")
    async def feedback(request: Request) -> Response:
        try:
            caller = gateway.authorise(request.headers.get("authorization"), feedback=True)
            body = await read_body(request, gateway, FeedbackRequest)
            out = await asyncio.to_thread(gateway.feedback, body.request_id, body.score, body.label, body.comment,
                                          caller, body.index)
            return JSONResponse(out)
        except GatewayError as e:
            return error(e)

    @r.get("/models")
    async def models(request: Request) -> Response:
        try:
            key_app = gateway.authorise(request.headers.get("authorization")).app
        except GatewayError as e:
            return error(e)
        names = [n for n in gateway.ws.eco.lines if key_app is None or n == key_app]
        return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "created": 0,
                                                         "owned_by": "loopgate"} for n in names]})


async def unknown(request: Request, rest: str) -> Response:
    """What no route took: OpenAI's error body (404, or 405 on a known path with another method)."""
    if rest == "responses":
        return error(GatewayError(404, "/v1/responses (OpenAI's Responses API) is not served by this gateway; "
                                  "use /v1/chat/completions (inspect_ai: responses_api=False, openai SDK: "
                                  "client.chat.completions.create)", code="unknown_url"))
    if rest in ROUTES:
        return error(GatewayError(405, f"{request.method} is not allowed on /v1/{rest}; use {ROUTES[rest]}",
                                  code="method_not_allowed", headers={"Allow": ROUTES[rest]}))
    return error(GatewayError(404, f"unknown request URL: {request.method} /v1/{rest}; the gateway serves "
                               "/v1/completions, /v1/chat/completions, /v1/feedback and /v1/models",
                               code="unknown_url"))
