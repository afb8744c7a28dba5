"""The api routes. `router(ws)` returns the APIRouter that :func:`loopgate.server.app.create_app` mounts."""

from __future__ import annotations

from fastapi import APIRouter

from loopgate.loop.workspace import Workspace


def router(ws: Workspace) -> APIRouter:
    return APIRouter()
