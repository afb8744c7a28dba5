"""Every REST error answers the documented body, ``{"error": KIND, "message": TEXT}`` (docs/control-plane.md), with
the status the docs define — never FastAPI's ``{"detail": …}`` and never a 422. The sweep walks every operation
of the app's own OpenAPI document, so a new route is covered without being listed here; the gateway keeps
OpenAI's error body and the dashboard its HTML pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loopgate.server.app import create_app
from loopgate.store.tokens import create_token

METHODS = ("get", "post", "put", "patch", "delete")
# a malformed value for each kind of parameter: what no route accepts
BAD_PARAM = {"integer": "not-a-number", "boolean": "perhaps"}
NO_TOKEN_ID = str(2**31 - 1)  # the largest id the route takes; no test makes that many tokens


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A fresh workspace (no model needed: nothing here gets past the checks) served in-process."""
    from small_spec import SMALL_SPEC

    from loopgate.loop.workspace import Workspace

    ws, _ = Workspace.init(tmp_path_factory.mktemp("rest-errors") / "ws", spec_text=SMALL_SPEC)
    app = create_app(ws.root)
    store = app.state.workspace.store
    tokens = {role: create_token(store, role=role, name=f"sweep-{role}", actor="test").token
              for role in ("viewer", "admin")}
    with TestClient(app, raise_server_exceptions=False) as client:
        yield {"app": app, "client": client, "tokens": tokens, "doc": client.get("/openapi.json").json()}
    ws.store.close()


def rest_operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, path, op) for path, item in doc["paths"].items() if path.startswith("/api/")
            for m, op in item.items() if m in METHODS]


def concrete(path: str) -> str:
    """A path template with each parameter filled by a name that exists nowhere."""
    return re.sub(r"\{(\w+)\}", lambda m: NO_TOKEN_ID if m.group(1) == "token_id" else "nosuch@1", path)


def assert_documented(r: Any, status: int | set[int], kind: str | None = None) -> dict[str, Any]:
    """The answer is JSON {"error", "message"} (a ValidationError also lists its fields in "detail")."""
    allowed = {status} if isinstance(status, int) else status
    assert r.status_code in allowed, (r.request.method, r.request.url, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    assert set(body) <= {"error", "message", "detail"} and body["message"], body
    assert "detail" not in body or body["error"] == "ValidationError", body
    if kind is not None:
        assert body["error"] == kind, body
    return body


def test_every_rest_operation_refuses_missing_and_bad_tokens_with_401(api: dict[str, Any]) -> None:
    client, ops = api["client"], rest_operations(api["doc"])
    assert len(ops) >= 25  # the whole API is in the document
    for method, path, _ in ops:
        for headers in ({}, {"Authorization": "Bearer lg_" + "x" * 43}, {"Authorization": "Basic dXNlcjpwYXNz"}):
            r = client.request(method.upper(), concrete(path), headers=headers, json={})
            body = assert_documented(r, 401, "Unauthorized")
            assert "Authorization: Bearer" in body["message"]
            assert r.headers.get("www-authenticate") == "Bearer"


def test_a_role_that_is_not_enough_is_403_in_the_documented_body(api: dict[str, Any]) -> None:
    client = api["client"]
    viewer = {"Authorization": f"Bearer {api['tokens']['viewer']}"}
    refused = 0
    for method, path, _ in rest_operations(api["doc"]):
        if method == "get" and not path.startswith("/api/v1/tokens"):
            continue  # reads are every role's
        r = client.request(method.upper(), concrete(path), headers=viewer, json={})
        body = assert_documented(r, 403, "Forbidden")
        assert "role" in body["message"]
        refused += 1
    assert refused >= 9


def test_malformed_bodies_and_parameters_are_400_never_422(api: dict[str, Any]) -> None:
    client = api["client"]
    admin = {"Authorization": f"Bearer {api['tokens']['admin']}"}
    checked = 0
    for method, path, op in rest_operations(api["doc"]):
        url = concrete(path)
        if "requestBody" in op:
            for raw in (b'{"reason": ', b"[1, 2]", b'"text"', b"\xff\xfe", b"{}" if op["requestBody"].get("required")
                        and path.endswith(("approve", "update", "tokens")) else b"null"):
                r = client.request(method.upper(), url, content=raw,
                                   headers={**admin, "Content-Type": "application/json"})
                body = assert_documented(r, 400, "ValidationError")
                assert body["detail"] and all({"loc", "msg", "type"} <= set(d) for d in body["detail"])
                checked += 1
        for param in op.get("parameters", []):
            bad = BAD_PARAM.get(param["schema"].get("type", ""))
            if bad is None or param["in"] not in ("query", "path"):
                continue
            target = (url.replace(NO_TOKEN_ID, bad) if param["in"] == "path"
                      else f"{url}?{param['name']}={bad}")
            r = client.request(method.upper(), target, headers=admin, json={})
            assert_documented(r, 400, "ValidationError")
            checked += 1
    # required query parameters left out, and numbers out of their documented range
    for url in ("/api/v1/compare", "/api/v1/compare?a=base@1", "/api/v1/ledger?limit=501",
                "/api/v1/line-summaries?limit=0", "/api/v1/ledger?offset=-1"):
        body = assert_documented(client.get(url, headers=admin), 400, "ValidationError")
        assert body["message"].startswith("query.")
        checked += 1
    assert checked >= 40


def test_names_that_do_not_exist_are_404_and_bad_names_400(api: dict[str, Any]) -> None:
    client = api["client"]
    admin = {"Authorization": f"Bearer {api['tokens']['admin']}"}
    for method, path, _ in rest_operations(api["doc"]):
        if "{" not in path:
            continue
        r = client.request(method.upper(), concrete(path), headers=admin,
                           json={"reason": "r", "channel": "staging", "data": ["data/x.jsonl"]})
        assert_documented(r, {400, 404})


def test_unknown_routes_and_methods_under_api_are_404_and_405(api: dict[str, Any]) -> None:
    client, doc = api["client"], api["doc"]
    admin = {"Authorization": f"Bearer {api['tokens']['admin']}"}
    for url in ("/api", "/api/", "/api/v1", "/api/v1/nope", "/api/v2/lines", "/api/v1/lines/base/nope/deeper"):
        body = assert_documented(client.get(url, headers=admin), 404, "NotFoundError")
        assert "/docs" in body["message"]
    wrong = 0
    for path, item in doc["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method in set(METHODS) - set(item):
            r = client.request(method.upper(), concrete(path), headers=admin)
            body = assert_documented(r, 405, "MethodNotAllowed")
            assert method.upper() in body["message"]
            assert set(r.headers["allow"].replace(" ", "").split(",")) >= {m.upper() for m in item if m in METHODS}
            wrong += 1
    assert wrong >= 60


def test_a_defect_in_a_rest_route_is_500_in_the_documented_body_without_its_text(api: dict[str, Any]) -> None:
    """A route that fails with a bug: the client gets InternalError and no exception text (the log has it)."""
    from fastapi import APIRouter

    r = APIRouter(prefix="/api/v1")

    @r.get("/defect-for-test")
    def defect() -> None:
        raise RuntimeError("secret internals: /srv/loopgate/.loopgate")

    app = create_app(api["app"].state.workspace.root, gateway=False, dashboard=False)
    app.include_router(r)
    with TestClient(app, raise_server_exceptions=False) as client:
        got = client.get("/api/v1/defect-for-test")
    body = assert_documented(got, 500, "InternalError")
    assert "secret" not in got.text and "RuntimeError" not in got.text and "log" in body["message"]


def test_the_gateway_keeps_openai_errors_and_the_dashboard_its_pages(api: dict[str, Any]) -> None:
    client = api["client"]
    for method, url, status in (("GET", "/v1/nope", 404), ("OPTIONS", "/v1/models", 405), ("HEAD", "/v1/nope", 405),
                                ("POST", "/v1/completions", 401)):
        r = client.request(method, url)
        assert r.status_code == status, (method, url, r.status_code, r.text)
        if method != "HEAD":
            err = r.json()["error"]
            assert isinstance(err, dict) and {"message", "type", "code"} <= set(err), r.text
    # a dashboard page: no token shows the login page, a missing version the HTML error page
    r = client.get("/versions/nosuch@1")
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    viewer = {"Authorization": f"Bearer {api['tokens']['viewer']}"}
    r = client.get("/versions/nosuch@1", headers=viewer)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html") and "<html" in r.text.lower()
