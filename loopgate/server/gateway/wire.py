"""The gateway's wire: reading a request body (size limit, JSON, pydantic) and writing errors and server-sent
events."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from loopgate.server.gateway.schemas import error_body
from loopgate.server.gateway.service import Gateway, GatewayError


def error(e: GatewayError) -> JSONResponse:
    """``e`` as OpenAI's error body with its status and headers."""
    return JSONResponse(error_body(e.message, e.type, param=e.param, code=e.code), status_code=e.status,
                        headers=e.headers)


async def read_body(request: Request, gateway: Gateway, model: type[BaseModel]) -> Any:
    """The request's JSON body validated as ``model``; a 400 or 413 for anything else."""
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


def user_key(user: str | None, request_id: str) -> tuple[str, str | None]:
    """(what the sticky canary split hashes with the API key, the user hash kept in the log)."""
    if user:
        h = hashlib.sha256(user.encode()).hexdigest()
        return h, h
    return request_id, None


def sse(events: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    async def gen() -> AsyncGenerator[bytes, None]:
        for ev in events:
            yield f"data: {json.dumps(ev, ensure_ascii=False)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return gen()


def pieces(tokenizer: Any, text: str) -> list[str]:
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
