"""The REST API's side of authentication: a route whose user error answers the API's JSON body. The roles and
the role check are shared with the dashboard (:mod:`loopgate.server.auth`, re-exported here)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from loopgate.errors import LoopgateError
from loopgate.server.api.errors import http_error_body, validation_body
from loopgate.server.auth import (
    ALLOWED,
    BEARER,
    COOKIE,
    PUBLIC,
    RoleRequirement,
    bearer,
    may,
    role_of,
    status_for,
    walk_routes,
)


def error_body(e: LoopgateError) -> dict[str, Any]:
    """The same message the CLI prints, with the error's kind."""
    return {"error": type(e).__name__, "message": str(e)}


class LoopgateRoute(APIRoute):
    """A route whose LoopgateError becomes JSON ``{"error", "message"}`` with :func:`status_for`'s code."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except LoopgateError as e:
                return JSONResponse(error_body(e), status_code=status_for(e))
            except RequestValidationError as e:  # what the docs define for a refused request: 400
                return JSONResponse(validation_body(e), status_code=400)
            except HTTPException as e:  # 401/403 from the role check, in the same body as every other error
                return JSONResponse(http_error_body(request, e.status_code, e.detail), status_code=e.status_code,
                                    headers=dict(e.headers or {}))
            except UnicodeEncodeError:  # a lone surrogate in a body's text: no database or ledger can hold it
                return JSONResponse({"error": "DataError", "message": "the request holds text with a lone surrogate "
                                     "(an unpaired \\ud800-\\udfff escape), which cannot be stored: send valid "
                                     "UTF-8"}, status_code=400)

        return run


__all__ = ["ALLOWED", "BEARER", "COOKIE", "PUBLIC", "LoopgateRoute", "RoleRequirement", "bearer", "error_body", "may",
           "role_of", "status_for", "walk_routes"]
