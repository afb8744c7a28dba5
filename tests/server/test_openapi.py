"""The OpenAPI document declares how to authenticate, and its pages work offline (issue 21, part 3).

- ``/openapi.json``: an HTTP bearer scheme for the REST API's token, required on every REST operation (the
  routes' role declarations are what the document is built from), a gateway key scheme on the gateway's
  operations, and the documented error body instead of FastAPI's 422.
- ``/docs`` and ``/redoc`` load every script and style sheet from the app itself, and a real headless Chromium
  that can reach nothing but the server renders Swagger UI with the API's operations listed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loopgate.server.api.auth import PUBLIC, role_of, walk_routes
from loopgate.server.app import create_app
from loopgate.store.tokens import create_token

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from small_spec import SMALL_SPEC

    from loopgate.loop.workspace import Workspace

    ws, _ = Workspace.init(tmp_path_factory.mktemp("openapi") / "ws", spec_text=SMALL_SPEC)
    app = create_app(ws.root)
    token = create_token(app.state.workspace.store, role="viewer", name="reader", actor="test").token
    with TestClient(app) as client:
        yield {"app": app, "client": client, "doc": client.get("/openapi.json").json(), "token": token}
    ws.store.close()


def operations(doc: dict[str, Any], prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in doc["paths"].items() if p.startswith(prefix)
            for m, op in item.items() if m in METHODS]


def test_bearer_auth_is_declared_and_required_on_every_rest_operation(served_app: dict[str, Any]) -> None:
    doc = served_app["doc"]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerToken"]["type"] == "http" and schemes["bearerToken"]["scheme"] == "bearer"
    assert "loopgate token create" in schemes["bearerToken"]["description"]
    rest = operations(doc, "/api/")
    assert len(rest) >= 25
    unprotected = [(m, p) for m, p, op in rest if op.get("security") != [{"bearerToken": []}]]
    assert unprotected == []
    assert "security" not in doc  # no global requirement: the docs pages and the schema itself are public


def test_every_protected_route_of_the_app_is_in_the_document(served_app: dict[str, Any]) -> None:
    """The routes that declare a role other than public are exactly the REST operations the document lists (the
    dashboard's pages are left out of it on purpose)."""
    doc = served_app["doc"]
    declared = {(m.lower(), path) for path, route in walk_routes(served_app["app"].routes)
                if path.startswith("/api/") and role_of(route) not in (None, PUBLIC)
                for m in getattr(route, "methods", set()) - {"HEAD"}}
    assert declared == {(m, p) for m, p, _ in operations(doc, "/api/")}
    assert not [p for p in doc["paths"] if not p.startswith(("/api/", "/v1/"))]


def test_the_gateway_operations_declare_their_api_key(served_app: dict[str, Any]) -> None:
    doc = served_app["doc"]
    assert doc["components"]["securitySchemes"]["gatewayKey"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["gatewayKey"][
            "description"]}
    gateway = operations(doc, "/v1/")
    assert {p for _, p, _ in gateway} >= {"/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/feedback"}
    assert all(op.get("security") == [{"gatewayKey": []}] for _, _, op in gateway)


def test_errors_are_documented_as_the_api_answers_them(served_app: dict[str, Any]) -> None:
    """No operation lists FastAPI's 422 or its {"detail"} schema; each REST operation lists 4XX as ErrorBody."""
    doc = served_app["doc"]
    text = json.dumps(doc)
    assert '"422"' not in text and "HTTPValidationError" not in text
    error = doc["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "message"}
    for m, p, op in operations(doc, "/api/"):
        ref = op["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorBody", (m, p)


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(str(a["src"]))
        if tag == "link" and a.get("href"):
            self.urls.append(str(a["href"]))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_every_asset_from_the_app_itself(served_app: dict[str, Any], page: str) -> None:
    client = served_app["client"]
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    parser = _Assets()
    parser.feed(r.text)
    assert len(parser.urls) >= 2, parser.urls
    kinds = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
        got = client.get(url)
        assert got.status_code == 200 and len(got.content) > 1000, (url, got.status_code, len(got.content))
        assert kinds[Path(url).suffix] in got.headers["content-type"], (url, got.headers["content-type"])
    assert "cdn.jsdelivr" not in r.text and "fonts.googleapis" not in r.text


def test_swagger_ui_renders_the_api_in_chromium_with_no_network(served_app: dict[str, Any], tmp_path: Path) -> None:
    """Chromium resolves no host name but the server's address (the test machine has no network either), and
    every resource it loaded came from the server: Swagger UI lists every REST operation and offers the bearer
    token under Authorize."""
    import shutil

    from browser import CHROMEDRIVER, CHROMIUM, FLAGS, serve

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: install Debian's chromium and chromium-driver "
                    "(make setup-test does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    offline = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=127.0.0.1:9",
               "--proxy-bypass-list=127.0.0.1"]
    for flag in FLAGS + offline + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    rest = operations(served_app["doc"], "/api/")
    with serve(served_app["app"]) as url:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.set_page_load_timeout(60)
            driver.get(url + "/docs")
            WebDriverWait(driver, 60).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(rest))
            driver.save_screenshot(str(tmp_path / "swagger-ui.png"))
            shown = {(b.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.lower(),
                      b.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"))
                     for b in driver.find_elements(By.CSS_SELECTOR, ".opblock")}
            assert {(m, p) for m, p, _ in rest} <= shown
            assert driver.find_elements(By.CSS_SELECTOR, ".auth-wrapper .authorize")  # bearer auth is offered
            loaded = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)")
            assert loaded and all(u.startswith(url + "/") for u in loaded), loaded
            print(f"screenshot: {tmp_path / 'swagger-ui.png'}")
        finally:
            driver.quit()
