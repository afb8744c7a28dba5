"""The app's OpenAPI document (``/openapi.json``): FastAPI's, plus what FastAPI cannot see on its own.

The REST routes declare their bearer token through their role dependency (:data:`.auth.BEARER`), so FastAPI
lists it. The gateway's routes read their API key themselves (OpenAI's clients send it the same way, but the
gateway answers in OpenAI's error body), so their security is added here: every ``/v1`` operation needs a
gateway key, a scheme of its own since a gateway key is not an API token.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from loopgate.server.api.errors import GATEWAY_ROOT

GATEWAY_SCHEME = "gatewayKey"
DESCRIPTION = ("Loopgate's control plane: the REST API under `/api/v1` (a Loopgate API token, `Authorization: "
               "Bearer lg_…`) and the OpenAI-compatible gateway under `/v1` (a gateway API key). Every REST error "
               "answers `{\"error\", \"message\"}`; the gateway's errors are OpenAI's `{\"error\": {…}}`.")
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def declare_gateway_keys(doc: dict[str, Any]) -> None:
    """Add the gateway key's scheme and require it on every gateway operation in ``doc``."""
    gateway_ops = [op for path, item in doc.get("paths", {}).items()
                   if path == GATEWAY_ROOT or path.startswith(GATEWAY_ROOT + "/")
                   for method, op in item.items() if method in HTTP_METHODS]
    if not gateway_ops:
        return
    schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[GATEWAY_SCHEME] = {
        "type": "http", "scheme": "bearer",
        "description": "A gateway API key for one app: `loopgate key create APP`. Required unless the server "
                       "runs with `loopgate serve --no-api-keys`."}
    for op in gateway_ops:
        op.setdefault("security", [{GATEWAY_SCHEME: []}])


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The document, built once on first use (routers mounted after the app was made are in it)."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=DESCRIPTION, routes=app.routes)
        declare_gateway_keys(doc)
        app.openapi_schema = doc
    return app.openapi_schema


def install(app: FastAPI) -> None:
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
