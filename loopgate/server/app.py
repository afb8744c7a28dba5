"""The one app factory: every front end over HTTP is a router mounted here, calling the service layer
(:mod:`loopgate.loop`) exactly as the CLI does."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from loopgate.loop.workspace import Workspace


def create_app(workspace: str | Path, *, gateway: bool = True, api: bool = True, dashboard: bool = True) -> FastAPI:
    """The app serving WORKSPACE: the gateway (#13), the REST API and the dashboard (#14), each optional."""
    ws = Workspace.open(workspace)
    app = FastAPI(title="Loopgate", version="0.1.0")
    app.state.workspace = ws
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
