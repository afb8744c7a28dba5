"""The API's documentation pages, offline: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, their scripts and
style sheet served by this app from the ``fastapi-offline`` package (FastAPI's own pages load them from a CDN,
which leaves ``/docs`` blank on a machine without internet access).

The assets are routes of their own, one per file, rather than a static-files mount: the app's routes are walked
by the role tests, and a fixed set of files is all there is to serve. Nothing here takes a path from a request.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSET_URL = "/docs/assets"
# file name → media type: the whole of what the pages load
ASSET_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}
DOCS, OAUTH2_REDIRECT, REDOC = "/docs", "/docs/oauth2-redirect", "/redoc"
# every path this router serves (public, like /openapi.json: the API's shape is no secret)
DOCS_PATHS = frozenset({DOCS, OAUTH2_REDIRECT, REDOC} | {f"{ASSET_URL}/{name}" for name in ASSET_FILES})


def _asset_route(r: APIRouter, name: str, media_type: str) -> None:
    path = ASSETS / name

    @r.get(f"{ASSET_URL}/{name}", name=f"docs-asset-{name}")
    def asset() -> FileResponse:
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


def router(app: FastAPI) -> APIRouter:
    """``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and their assets, for ``app``'s OpenAPI document."""
    missing = [n for n in ASSET_FILES if not (ASSETS / n).is_file()]
    if missing:  # a broken install: say so at start-up, not as a blank page later
        raise RuntimeError(f"fastapi-offline's assets {missing} are missing from {ASSETS}; reinstall it")
    r = APIRouter(include_in_schema=False)
    openapi_url = app.openapi_url or "/openapi.json"

    @r.get(DOCS)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=root + openapi_url, title=f"{app.title} — Swagger UI",
                                   swagger_js_url=f"{root}{ASSET_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{ASSET_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{ASSET_URL}/favicon.png",
                                   oauth2_redirect_url=root + OAUTH2_REDIRECT,
                                   swagger_ui_parameters={"persistAuthorization": False})

    @r.get(OAUTH2_REDIRECT)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @r.get(REDOC)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=root + openapi_url, title=f"{app.title} — ReDoc",
                              redoc_js_url=f"{root}{ASSET_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSET_URL}/favicon.png", with_google_fonts=False)

    for name, media_type in ASSET_FILES.items():
        _asset_route(r, name, media_type)
    return r
