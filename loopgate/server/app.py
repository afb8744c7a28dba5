"""The one app factory: every front end over HTTP is a router mounted here, calling the service layer
(:mod:`loopgate.loop`) exactly as the CLI does."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from loopgate.loop.workspace import Workspace
from loopgate.server.api import docs, errors, openapi


def create_app(workspace: str | Path, *, gateway: bool = True, api: bool = True, dashboard: bool = True) -> FastAPI:
    """The app serving WORKSPACE: the gateway (#13), the REST API and the dashboard (#14), each optional; its
    OpenAPI document at ``/openapi.json`` with Swagger UI (``/docs``) and ReDoc (``/redoc``) served offline."""
    ws = Workspace.open(workspace)
    # FastAPI's own /docs and /redoc load their scripts from a CDN: docs.router serves them from this app
    app = FastAPI(title="Loopgate", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.workspace = ws
    errors.install(app)  # REST errors in the API's body, the gateway's in OpenAI's, the rest as FastAPI's
    openapi.install(app)
    app.include_router(docs.router(app))
    if gateway:
        from loopgate.server.gateway import router as gateway_router

        app.include_router(gateway_router(ws))
    if api:
        from loopgate.server.api import router as api_router

        app.include_router(api_router(ws))
    if dashboard:
        from loopgate.server.dashboard import router as dashboard_router

        app.include_router(dashboard_router(ws))
    return app
