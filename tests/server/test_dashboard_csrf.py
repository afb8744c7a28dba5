"""CSRF: a dashboard form posted from anywhere but the dashboard's own pages is refused — 403 with the error
page — and moves nothing (``loopgate/server/dashboard/csrf.py``).

The attack this stops was measured in a browser: a page served from another port of the same host posted the
rollback form, and Chromium sent the releaser's ``SameSite=Strict`` cookie with it (every port of a host is
one *site*). Each test starts from the control world with support@2 approved and released, so production of
``support`` is support@2 and its rollback target support@1: a forged rollback has something to move.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_api_world import world_copy
from test_dashboard_browser import _login, browser, serve  # noqa: F401 (browser: the Chromium fixture)

OWN = "http://testserver"  # the TestClient's origin


@pytest.fixture
def released(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> dict[str, Any]:
    """A fresh copy of the world where dana approved support@2 (through the REST API: a bearer token, no
    form token), so support@2 is in production and support@1 is the rollback target; a releaser, rita."""
    from loopgate.server.app import create_app
    from loopgate.store.tokens import create_token

    app = create_app(world_copy(tiny_model_dir, tmp_path_factory, tmp_path / "ws")["root"], gateway=False)
    store = app.state.workspace.store
    tokens = {role: create_token(store, role=role, name=name, actor="test").token
              for role, name in (("approver", "dana"), ("releaser", "rita"))}
    r = TestClient(app).post("/api/v1/versions/support@2/approve", json={"reason": "reviewed the evidence"},
                             headers={"Authorization": f"Bearer {tokens['approver']}"})
    assert r.status_code == 200 and r.json()["released"], r.text
    assert store.channel("support", "production") == "support@2"
    assert store.rollback_target("support") == "support@1"
    return {"app": app, "store": store, "tokens": tokens}


def _state(store: Any) -> tuple[dict[str, dict[str, str | None]], int]:
    """Every line's channels and the ledger's length: what a refused post must leave as it was."""
    from loopgate.store.pages import ledger_page

    lines = ("base", "support", "guard")
    return {line: store.channels(line) for line in lines}, ledger_page(store, 0, 1).total


def _logged_in(app: Any, token: str) -> TestClient:
    """A client holding the dashboard's login cookie, as a browser does after the login form."""
    client = TestClient(app)
    r = client.post("/login", data={"token": token, "next": "/"}, headers={"Origin": OWN}, follow_redirects=False)
    assert r.status_code == 303 and client.cookies.get("loopgate_token") == token
    return client


def _form_token(client: TestClient, page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]*)"', client.get(page).text)
    assert found is not None and len(found.group(1)) == 64, f"no CSRF token in the forms of {page}"
    return found.group(1)


def test_a_form_without_the_right_token_is_refused_and_moves_nothing(released: dict[str, Any]) -> None:
    store = released["store"]
    before = _state(store)
    rita = _logged_in(released["app"], released["tokens"]["releaser"])
    dana = _logged_in(released["app"], released["tokens"]["approver"])
    for why, form, says in (
        ("no token", {"reason": "forged"}, "has no CSRF token"),
        ("a made-up token", {"reason": "forged", "csrf": "0" * 64}, "does not match your session"),
        ("another session's token", {"reason": "forged", "csrf": _form_token(dana, "/")}, "does not match"),
        ("a token that is not ASCII", {"reason": "forged", "csrf": "ä" * 64}, "does not match"),
    ):
        r = rita.post("/lines/support/rollback", data=form, headers={"Origin": OWN}, follow_redirects=False)
        assert r.status_code == 403, why
        assert "Not allowed" in r.text and says in r.text, why  # the dashboard's error page, saying why
    assert _state(store) == before  # production is support@2 and the ledger has no new entry


def test_a_form_from_another_origin_is_refused_even_with_the_token(released: dict[str, Any]) -> None:
    store = released["store"]
    before = _state(store)
    rita = _logged_in(released["app"], released["tokens"]["releaser"])
    form = {"reason": "forged", "csrf": _form_token(rita, "/lines/support")}
    for headers in ({"Origin": "http://127.0.0.1:9999"},  # another port of the same host: the measured attack
                    {"Origin": "https://testserver"},  # another scheme
                    {"Origin": "null"},  # a sandboxed frame or a data: page
                    {"Referer": "http://127.0.0.1:9999/attack.html"}):  # no Origin: the Referer decides
        r = rita.post("/lines/support/rollback", data=form, headers=headers, follow_redirects=False)
        assert r.status_code == 403, headers
        assert "not from the dashboard (http://testserver)" in r.text, headers
    assert _state(store) == before


def test_the_dashboards_own_form_works(released: dict[str, Any]) -> None:
    store = released["store"]
    _, entries = _state(store)
    rita = _logged_in(released["app"], released["tokens"]["releaser"])
    token = _form_token(rita, "/lines/support")
    # a non-browser client sends neither Origin nor Referer: the token alone decides
    r = rita.post("/ledger/verify", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and "ledger%20verified" in r.headers["location"]
    r = rita.post("/lines/support/rollback", data={"reason": "bad answers", "csrf": token},
                  headers={"Origin": OWN, "Referer": f"{OWN}/lines/support"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert store.channel("support", "production") == "support@1"
    _, after = _state(store)
    assert after > entries
    assert store.channel_history("support")[-1].actor == "rita"


def test_every_dashboard_post_checks_the_token_and_the_origin(released: dict[str, Any]) -> None:
    """Walk the dashboard's POST routes: with the cookie and no token each is 403, from another origin each
    is 403 even with the token (login and logout too: no session to bind a token to, the Origin decides)."""
    from loopgate.server.api.auth import PUBLIC, role_of, walk_routes
    from loopgate.server.dashboard import DashboardRoute

    app, store = released["app"], released["store"]
    before = _state(store)
    rita = _logged_in(app, released["tokens"]["releaser"])
    token = _form_token(rita, "/")
    posts = [(path, route) for path, route in walk_routes(app.routes)
             if isinstance(route, DashboardRoute) and "POST" in route.methods]
    assert {p for p, _ in posts} >= {"/login", "/logout", "/ledger/verify", "/lines/{line}/rollback",
                                     "/versions/{version_id}/approve", "/versions/{version_id}/release",
                                     "/versions/{version_id}/promote"}
    for template, route in posts:
        path = template.replace("{line}", "support").replace("{version_id}", "support@1")
        form = {"reason": "forged", "channel": "production", "to": "support@1"}
        if role_of(route) != PUBLIC:
            r = rita.post(path, data=form, headers={"Origin": OWN}, follow_redirects=False)
            assert r.status_code == 403 and "has no CSRF token" in r.text, path
        r = rita.post(path, data={**form, "csrf": token, "token": released["tokens"]["approver"]},
                      headers={"Origin": "http://127.0.0.1:9999"}, follow_redirects=False)
        assert r.status_code == 403 and "not from the dashboard" in r.text, path
    assert rita.cookies.get("loopgate_token") == released["tokens"]["releaser"]  # no forged login or logout
    assert _state(store) == before


def test_a_bearer_token_post_needs_no_form_token(released: dict[str, Any]) -> None:
    """A header is no ambient credential (a page cannot make a browser send it without CORS, which this server
    never grants): the REST API and scripts posting the dashboard's routes with it need no form token."""
    store = released["store"]
    h = {"Authorization": f"Bearer {released['tokens']['releaser']}"}
    client = TestClient(released["app"])
    r = client.post("/ledger/verify", headers=h, follow_redirects=False)
    assert r.status_code == 303
    r = client.post("/api/v1/lines/support/rollback", json={"reason": "from a script"}, headers=h)
    assert r.status_code == 200, r.text
    assert store.channel("support", "production") == "support@1"


# ---------------------------------------------------------------------------------------- in a real browser


class _AttackerPage(BaseHTTPRequestHandler):
    """Serves a page that posts the dashboard's rollback form as soon as it loads (TARGET set per server)."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = (f'<!doctype html><html><body onload="document.forms[0].submit()"><h1>cute cats</h1>'
                f'<form method="post" action="{self.target}"><input name="reason" value="forged by a page on '
                f'another port"></form></body></html>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _attacker(target: str) -> Iterator[str]:
    """Another HTTP server on another port of 127.0.0.1, serving the attacker's page; yields its URL."""
    handler = type("Attacker", (_AttackerPage,), {"target": target})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_a_page_on_another_port_cannot_roll_production_back_in_chromium(
        released: dict[str, Any], browser: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Chromium logged in as the releaser opens a page from another port of 127.0.0.1 that auto-submits the
    rollback form: the dashboard answers 403 and production stays. Then, as a control, the same attack with
    the checks switched off does roll production back — the cookie does ride along, so this test would
    have failed before the checks existed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from loopgate.server.dashboard import csrf

    store, app = released["store"], released["app"]
    statuses: list[tuple[str, str, int]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        """The app, noting each answer's status (the browser does not tell Selenium)."""
        async def note(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append((scope["method"], scope["path"], message["status"]))
            await send(message)
        await app(scope, receive, note if scope["type"] == "http" else send)

    with serve(recording) as url, _attacker(f"{url}/lines/support/rollback") as evil:
        assert evil.rsplit(":", 1)[1] != url.rsplit(":", 1)[1]  # same host, another port: the same site
        _login(browser, url, released["tokens"]["releaser"])
        before = _state(store)

        def attack() -> str:
            statuses.clear()
            browser.get(evil)
            WebDriverWait(browser, 30).until(lambda d: d.current_url.startswith(url))
            WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#error, #msg, #lineage"))
            posted = [s for m, p, s in statuses if (m, p) == ("POST", "/lines/support/rollback")]
            assert len(posted) == 1, statuses
            return f"{posted[0]} {browser.find_element(By.TAG_NAME, 'body').text}"

        answer = attack()
        assert answer.startswith("403 "), answer
        assert f"posted from {evil}" in answer  # refused by the Origin check, on the dashboard's error page
        assert _state(store) == before

        # the form token alone refuses it too (a browser that sent no Origin or Referer)
        monkeypatch.setattr(csrf, "foreign_origin", lambda request: None)
        answer = attack()
        assert answer.startswith("403 ") and "has no CSRF token" in answer, answer
        assert _state(store) == before

        # control: with both checks off the same page rolls production back as rita
        monkeypatch.setattr(csrf, "refusal", _no_refusal)
        answer = attack()
        assert answer.startswith("303 "), answer
        assert store.channel("support", "production") == "support@1"
        assert store.channel_history("support")[-1].actor == "rita"


async def _no_refusal(request: Any, *, public: bool) -> None:
    return None
