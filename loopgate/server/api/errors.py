"""Every REST error in one body, ``{"error": KIND, "message": TEXT}`` — including the errors no route sees:
an unknown path under ``/api`` (404), a method a path does not take (405), a request the framework refuses
before the route runs, and a defect (500).

FastAPI's exception handlers are the app's, not a router's, so each handler here looks at the path: under
``/api`` it answers the REST body; under ``/v1`` OpenAI's error body (what the gateway's clients parse); anywhere
else (the dashboard, the docs pages) FastAPI's default answer, unchanged.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from loopgate.errors import printable

REST_ROOT = "/api"
GATEWAY_ROOT = "/v1"
log = logging.getLogger("loopgate.api")

# the error kind of an HTTP status that no LoopgateError stands behind
KINDS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFoundError", 405: "MethodNotAllowed",
         413: "PayloadTooLarge", 415: "UnsupportedMediaType", 500: "InternalError"}


class ErrorBody(BaseModel):
    """Every REST error: ``error`` the kind (a LoopgateError subclass, ``ValidationError``, ``Unauthorized``,
    ``Forbidden``, ``NotFoundError``, ``MethodNotAllowed``, ``InternalError``), ``message`` the paragraph the CLI
    prints; a ``ValidationError`` also lists each refused field in ``detail``."""

    error: str
    message: str
    detail: list[dict[str, Any]] | None = None


def is_rest(request: Request) -> bool:
    path = request.url.path
    return path == REST_ROOT or path.startswith(REST_ROOT + "/")


def is_gateway(request: Request) -> bool:
    path = request.url.path
    return path == GATEWAY_ROOT or path.startswith(GATEWAY_ROOT + "/")


def kind_of(status: int) -> str:
    """``KINDS``' name, else the status's phrase in CamelCase (``418`` → ``ImATeapot``)."""
    if status in KINDS:
        return KINDS[status]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "HTTPError"
    return "".join(w[:1].upper() + w[1:] for w in phrase.replace("'", "").replace("-", " ").split())


def message_of(request: Request, status: int, detail: Any) -> str:
    """An HTTP error's message; the router's own 404 and 405 say what to do instead of only their status."""
    if status == 404 and detail == "Not Found":
        return f"no route {request.method} {request.url.path}; the routes are listed at /docs (and /openapi.json)"
    if status == 405 and detail == "Method Not Allowed":
        takes = ", ".join(allowed_methods(request)) or "no method"
        return f"{request.method} is not allowed on {request.url.path}: it takes {takes} (see /docs)"
    return printable(str(detail))


def http_error_body(request: Request, status: int, detail: Any) -> dict[str, Any]:
    """The REST body of an HTTP error."""
    return {"error": kind_of(status), "message": message_of(request, status, detail)}


def validation_body(e: RequestValidationError) -> dict[str, Any]:
    """A refused request (a malformed JSON body, a missing or mistyped field or parameter) as a 400
    ``ValidationError``, without the values sent: a value such as NaN, 1e999 or a lone surrogate cannot be written
    back as JSON (FastAPI's own 422 answer then fails with a 500), and echoing input is no help anyway."""
    detail = [{"loc": [printable(str(p)) for p in err.get("loc", ())], "msg": printable(str(err.get("msg", ""))),
               "type": str(err.get("type", ""))} for err in e.errors()]
    first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return {"error": "ValidationError", "message": f"{where}: {first['msg']}" if where else str(first["msg"]),
            "detail": detail}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on the request's path. Starlette's 405 names only the first route whose path
    matched (``GET /tokens`` hides ``POST /tokens``), so each method is tried against every route."""
    routes = request.app.router.routes
    return [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if any(route.matches({**request.scope, "method": m})[0] is Match.FULL for route in routes)]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and "Allow" in headers:
        headers["Allow"] = ", ".join(allowed_methods(request)) or headers["Allow"]
    if is_rest(request):
        return JSONResponse(http_error_body(request, exc.status_code, exc.detail), status_code=exc.status_code,
                            headers=headers)
    if is_gateway(request):  # only what the gateway's own catch-all route cannot see (HEAD, OPTIONS…)
        from loopgate.server.gateway.schemas import error_body

        code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code)
        body = error_body(message_of(request, exc.status_code, exc.detail), "invalid_request_error", code=code)
        return JSONResponse(body, status_code=exc.status_code, headers=headers)
    return await http_exception_handler(request, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if is_rest(request):
        return JSONResponse(validation_body(exc), status_code=400)
    return await request_validation_exception_handler(request, exc)


async def _defect(request: Request, exc: Exception) -> Response:
    """A bug (Starlette logs it and re-raises after this answer): the REST body, never the exception's text."""
    if is_rest(request):
        return JSONResponse({"error": "InternalError", "message": "internal error: the server log has the "
                             "details; please report it"}, status_code=500)
    return PlainTextResponse("Internal Server Error", status_code=500)


def install(app: FastAPI) -> None:
    """Route every framework-level error through the handlers above."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _defect)
