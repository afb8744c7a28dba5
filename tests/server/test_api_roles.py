"""Every route of the app, called with no token, a bad token and a token of each role, answers exactly as its
declared role says: 401 without a valid token, 403 with a role that is not enough, 2xx otherwise. The test
enumerates the app's routes, so a new route without a declared role, or one missing from the table below,
fails it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from test_api_world import AUTHOR, world_copy

from loopgate.server.api.auth import ALLOWED, PUBLIC, role_of, walk_routes
from loopgate.server.api.docs import DOCS_PATHS
from loopgate.server.app import create_app
from loopgate.store.tokens import ROLES, create_token

# FastAPI's own documentation routes: the OpenAPI schema is public, as the API's shape is no secret
FASTAPI_DOCS = {"/openapi.json", *DOCS_PATHS}  # /docs, /redoc and their assets, served offline
NAMES = {"viewer": "vera", "releaser": "rita", "approver": "dana", "admin": "ada"}
BAD_TOKEN = "lg_" + "x" * 43

Call = tuple[str, Any]  # (concrete path, JSON body or form dict or None)


def _fresh_token_id(ws_root: Path) -> Callable[[], Call]:
    def make() -> Call:
        from loopgate.store import Store

        store = Store(ws_root / ".loopgate")
        t = create_token(store, role="viewer", name="temp", actor="test")
        store.close()
        return f"/api/v1/tokens/{t.id}", None
    return make


def _a_job(client: TestClient | None, tokens: dict[str, str]) -> Callable[[], Call]:
    """The path of a job, made on first use and reused: an update naming no recipe of the spec, which fails at
    once without training (the update route's own tests run real jobs)."""
    made: list[str] = []

    def make() -> Call:
        if not made:
            assert client is not None
            r = client.post("/api/v1/lines/guard/update", json={"data": ["data/guard-refuse.jsonl"],
                                                                "recipe": "no-such-recipe"},
                            headers={"Authorization": f"Bearer {tokens['admin']}"})
            assert r.status_code == 202, r.text
            made.append(r.headers["location"])
        return made[0], None
    return make


def _table(ws_root: Path, tokens: dict[str, str], client: TestClient | None = None
           ) -> dict[tuple[str, str], Call | Callable[[], Call]]:
    """One concrete call per route (method, path template); each may be repeated (they are idempotent or
    act on a fresh object). Dashboard forms are posted as forms (``_form``)."""
    return {
        # the dashboard: pages, and the actions its forms post
        ("GET", "/login"): ("/login", None),
        ("POST", "/login"): ("/login", {"_form": True, "token": tokens["viewer"], "next": "/"}),
        ("POST", "/logout"): ("/logout", None),
        ("GET", "/"): ("/?page=1", None),
        ("GET", "/versions/{version_id}"): ("/versions/guard@1", None),
        ("GET", "/lines/{line}"): ("/lines/support", None),
        ("GET", "/ledger"): ("/ledger", None),
        ("POST", "/ledger/verify"): ("/ledger/verify", None),
        ("POST", "/versions/{version_id}/approve"): ("/versions/support@2/approve",
                                                     {"_form": True, "reason": "looked at the evidence"}),
        ("POST", "/versions/{version_id}/release"): ("/versions/guard@1/release", None),
        ("POST", "/versions/{version_id}/promote"): ("/versions/support@1/promote",
                                                     {"_form": True, "channel": "staging"}),
        ("POST", "/lines/{line}/rollback"): ("/lines/base/rollback", {"_form": True, "to": "base@1", "reason": "t"}),
        # the REST API
        ("GET", "/api/v1/me"): ("/api/v1/me", None),
        ("GET", "/api/v1/lines"): ("/api/v1/lines", None),
        ("GET", "/api/v1/line-summaries"): ("/api/v1/line-summaries?offset=1&limit=2", None),
        ("GET", "/api/v1/lines/{line}/versions"): ("/api/v1/lines/support/versions", None),
        ("GET", "/api/v1/lines/{line}/channels"): ("/api/v1/lines/support/channels", None),
        ("GET", "/api/v1/versions/{version_id}"): ("/api/v1/versions/guard@1", None),
        ("GET", "/api/v1/versions/{version_id}/lineage"): ("/api/v1/versions/support@1/lineage", None),
        ("GET", "/api/v1/versions/{version_id}/evaluations"): ("/api/v1/versions/guard@1/evaluations", None),
        ("GET", "/api/v1/versions/{version_id}/decisions"): ("/api/v1/versions/guard@1/decisions", None),
        ("GET", "/api/v1/versions/{version_id}/plan"): ("/api/v1/versions/base@1/plan", None),
        ("GET", "/api/v1/versions/{version_id}/report"): ("/api/v1/versions/support@2/report", None),
        ("GET", "/api/v1/compare"): ("/api/v1/compare?a=support@1&b=support@2", None),
        ("GET", "/api/v1/ledger"): ("/api/v1/ledger?offset=0&limit=5", None),
        ("GET", "/api/v1/ledger/verify"): ("/api/v1/ledger/verify", None),
        ("POST", "/api/v1/lines/{line}/update"): ("/api/v1/lines/guard/update?wait=true",
                                                  {"data": ["data/guard-refuse.jsonl"]}),
        ("GET", "/api/v1/jobs"): ("/api/v1/jobs", None),
        ("GET", "/api/v1/jobs/{job_id}"): _a_job(client, tokens),
        ("POST", "/api/v1/versions/{version_id}/release"): ("/api/v1/versions/guard@1/release", None),
        ("POST", "/api/v1/versions/{version_id}/approve"): ("/api/v1/versions/support@2/approve",
                                                            {"reason": "reviewed the evidence"}),
        ("POST", "/api/v1/versions/{version_id}/promote"): ("/api/v1/versions/support@1/promote",
                                                            {"channel": "staging"}),
        ("POST", "/api/v1/lines/{line}/rollback"): ("/api/v1/lines/base/rollback", {"to": "base@1"}),
        ("GET", "/api/v1/tokens"): ("/api/v1/tokens", None),
        ("POST", "/api/v1/tokens"): ("/api/v1/tokens", {"role": "viewer", "name": "new-viewer"}),
        ("DELETE", "/api/v1/tokens/{token_id}"): _fresh_token_id(ws_root),
        ("POST", "/api/v1/gc"): ("/api/v1/gc", {"dry_run": True}),
    }


@pytest.fixture(scope="module")
def app_under_test(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = world_copy(tiny_model_dir, tmp_path_factory, tmp_path_factory.mktemp("roles") / "ws")["root"]
    app = create_app(root, gateway=False)
    store = app.state.workspace.store
    tokens = {role: create_token(store, role=role, name=NAMES[role], actor="test").token for role in ROLES}
    with TestClient(app) as client:
        yield {"app": app, "client": client, "tokens": tokens, "root": root}


def _routes(app: Any) -> list[tuple[str, str, APIRoute]]:
    out = []
    for path, route in walk_routes(app.routes):
        for method in sorted((getattr(route, "methods", None) or {"GET"}) - {"HEAD"}):
            out.append((method, path, route))
    return out


def test_every_route_declares_a_role_and_is_in_the_table(app_under_test: dict[str, Any]) -> None:
    table = _table(app_under_test["root"], app_under_test["tokens"])
    routes = _routes(app_under_test["app"])
    assert len(routes) >= len(table)
    assert {p for _, p, r in routes if not isinstance(r, APIRoute)} <= FASTAPI_DOCS
    undeclared = [(m, p) for m, p, r in routes if p not in FASTAPI_DOCS and role_of(r) is None]
    assert undeclared == [], f"routes without a declared role: {undeclared}"
    missing = [(m, p) for m, p, _ in routes if (m, p) not in table and p not in FASTAPI_DOCS]
    assert missing == [], f"routes the roles table does not call: {missing}"
    stale = [k for k in table if k not in {(m, p) for m, p, _ in routes}]
    assert stale == [], f"table entries for routes that no longer exist: {stale}"


def _call(client: TestClient, method: str, entry: Call | Callable[[], Call], headers: dict[str, str]) -> Any:
    path, body = entry() if callable(entry) else entry
    if isinstance(body, dict) and body.get("_form"):
        form = {k: v for k, v in body.items() if k != "_form"}
        return client.request(method, path, data=form, headers=headers, follow_redirects=False)
    return client.request(method, path, json=body, headers=headers, follow_redirects=False)


def test_each_route_answers_401_403_or_2xx_exactly_as_declared(app_under_test: dict[str, Any]) -> None:
    client, tokens = app_under_test["client"], app_under_test["tokens"]
    table = _table(app_under_test["root"], app_under_test["tokens"], client)
    seen = 0
    wrong: list[str] = []
    for method, path, route in _routes(app_under_test["app"]):
        if path in FASTAPI_DOCS:
            r = client.request(method, path)
            if r.status_code != 200:
                wrong.append(f"{method} {path} (public docs): {r.status_code}")
            continue
        role = role_of(route)
        assert role is not None
        entry = table[(method, path)]
        callers: list[tuple[str, dict[str, str], set[int]]] = [
            ("no token", {}, {200, 201, 303} if role == PUBLIC else {401}),
            ("bad token", {"Authorization": f"Bearer {BAD_TOKEN}"}, {200, 201, 303} if role == PUBLIC else {401}),
        ]
        for token_role in ROLES:
            ok = role == PUBLIC or token_role in ALLOWED[role]
            callers.append((token_role, {"Authorization": f"Bearer {tokens[token_role]}"},
                            {200, 201, 303} if ok else {403}))
        for who, headers, expected in callers:
            r = _call(client, method, entry, headers)
            seen += 1
            if r.status_code not in expected:
                wrong.append(f"{method} {path} as {who} (declared {role}): {r.status_code} {r.text[:300]}")
    assert wrong == []
    assert seen >= 6 * len(table)


def test_the_approver_token_is_the_approver_and_the_author_may_not_approve(app_under_test: dict[str, Any]) -> None:
    """The two-person rule on the token's identity: an approver token named as the candidate's author is 403."""
    client, store = app_under_test["client"], app_under_test["app"].state.workspace.store
    author = create_token(store, role="approver", name=AUTHOR, actor="test").token
    r = client.post("/api/v1/versions/guard@1/approve", json={"reason": "mine"},
                    headers={"Authorization": f"Bearer {author}"})
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "TwoPersonRuleError" and "two-person rule" in r.json()["message"]
    approvals = [a.approver for a in store.approvals("support@2")]
    assert NAMES["approver"] in approvals and AUTHOR not in approvals


def test_errors_are_json_with_the_cli_message(app_under_test: dict[str, Any]) -> None:
    client, tokens = app_under_test["client"], app_under_test["tokens"]
    h = {"Authorization": f"Bearer {tokens['viewer']}"}
    r = client.get("/api/v1/versions/support@99", headers=h)
    assert r.status_code == 404 and r.json() == {"error": "NotFoundError",
                                                 "message": "no version support@99; see 'loopgate versions support'"}
    r = client.get("/api/v1/versions/nonsense", headers=h)
    assert r.status_code == 400 and "version ids read LINE@N" in r.json()["message"]


def test_a_revoked_token_is_refused_and_token_changes_are_in_the_ledger(app_under_test: dict[str, Any]) -> None:
    client, tokens = app_under_test["client"], app_under_test["tokens"]
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    new = client.post("/api/v1/tokens", json={"role": "releaser", "name": "temp-releaser"}, headers=admin).json()
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new['token']}"}).json()["role"] == "releaser"
    assert client.delete(f"/api/v1/tokens/{new['id']}", headers=admin).status_code == 200
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {new['token']}"}).status_code == 401
    listed = client.get("/api/v1/tokens", headers=admin).json()
    assert all("token" not in t for t in listed)  # secrets are never listed
    ledger = client.get("/api/v1/ledger?limit=500", headers=admin).json()["entries"]
    kinds = [(e["kind"], e["subject"]) for e in ledger]
    assert ("token.create", f"token/{new['id']}") in kinds and ("token.revoke", f"token/{new['id']}") in kinds
    assert client.get("/api/v1/ledger/verify", headers=admin).json()["ok"] is True


def test_line_summaries_are_paged_in_tier_order(app_under_test: dict[str, Any]) -> None:
    client, tokens = app_under_test["client"], app_under_test["tokens"]
    h = {"Authorization": f"Bearer {tokens['viewer']}"}
    page = client.get("/api/v1/line-summaries?offset=1&limit=2", headers=h).json()
    assert (page["total"], [x["name"] for x in page["lines"]]) == (4, ["support", "guard"])
    store = app_under_test["app"].state.workspace.store
    latest = store.latest_version("guard")
    assert latest is not None and page["lines"][1]["latest"] == latest.id  # the updates above added versions
    assert page["lines"][1]["latest_verdict"] == store.decisions(latest.id)[-1].verdict.value
    assert client.get("/api/v1/line-summaries?limit=501", headers=h).status_code == 400  # docs: a refused request


def test_update_data_must_be_a_jsonl_file_inside_the_workspace(app_under_test: dict[str, Any]) -> None:
    client, tokens = app_under_test["client"], app_under_test["tokens"]
    h = {"Authorization": f"Bearer {tokens['releaser']}"}
    for name in ("../outside.jsonl", "/etc/passwd", "loopgate.yaml", "data/missing.jsonl"):
        r = client.post("/api/v1/lines/guard/update", json={"data": [name]}, headers=h)
        assert r.status_code in (400, 404) and "workspace" in r.json()["message"], (name, r.text)


def test_the_update_route_trained_candidates_as_the_tokens_identity(app_under_test: dict[str, Any]) -> None:
    """The table above called POST /lines/guard/update as the releaser, then the admin: the releaser's call
    trained and gated a real candidate on the workspace's data file, recorded as made by the token's name; the
    admin's call with the same data trained nothing new (a finished training step is reused)."""
    store = app_under_test["app"].state.workspace.store
    updates = [v for v in store.versions("guard") if v.source == "update"]
    assert [v.created_by for v in updates] == [NAMES["releaser"]]
    assert store.decisions(updates[0].id) and updates[0].data_sha256


def test_an_update_is_a_job_polled_until_it_is_done(tiny_model_dir: Path,
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    """Training outlasts an HTTP request: POST …/update answers 202 at once with a job and its Location; the job
    trains, gates and records the candidate as the token's identity, and ends ``succeeded`` with the outcome; a
    job whose data is bad ends ``failed`` with the CLI's message; an unknown line is refused before any job."""
    import time

    root = world_copy(tiny_model_dir, tmp_path_factory, tmp_path_factory.mktemp("jobs") / "ws")["root"]
    (root / "data" / "broken.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b", "completion": 7}\n')
    app = create_app(root, gateway=False)
    store = app.state.workspace.store
    releaser = {"Authorization": "Bearer " + create_token(store, role="releaser", name="rita", actor="t").token}
    viewer = {"Authorization": "Bearer " + create_token(store, role="viewer", name="vera", actor="t").token}
    with TestClient(app) as client:
        r = client.post("/api/v1/lines/guard/update", json={"data": ["data/guard-refuse.jsonl"]}, headers=releaser)
        assert r.status_code == 202 and r.json()["state"] in ("queued", "running"), r.text
        good = r.headers["location"]
        bad = client.post("/api/v1/lines/guard/update", json={"data": ["data/broken.jsonl"]},
                          headers=releaser).headers["location"]
        unknown = client.post("/api/v1/lines/nope/update", json={"data": ["data/guard-refuse.jsonl"]},
                              headers=releaser)
        assert unknown.status_code == 400 and "nope" in unknown.json()["message"]  # as /lines/nope/versions says

        def finished(path: str) -> dict[str, Any]:
            deadline = time.monotonic() + 300
            while True:
                job = client.get(path, headers=viewer).json()
                if job["state"] in ("succeeded", "failed"):
                    return job
                assert time.monotonic() < deadline, job
                time.sleep(0.2)

        done, failed = finished(good), finished(bad)
        assert done["state"] == "succeeded" and done["requested_by"] == "rita", done
        candidate = done["result"]["decision"]["version"]
        assert store.version(candidate).created_by == "rita" and store.decisions(candidate)
        assert failed["state"] == "failed" and "broken.jsonl" in failed["error"] and failed["result"] is None
        listed = client.get("/api/v1/jobs", headers=viewer).json()
        assert [j["id"] for j in listed[:2]] == [bad.rsplit("/", 1)[1], good.rsplit("/", 1)[1]]  # newest first
        assert client.get("/api/v1/jobs/nope", headers=viewer).status_code == 404
