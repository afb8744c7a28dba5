"""Dashboard pages from a real registry without a browser: pinned lines in the lineage graph, paging, the
line history's forgetting matrix, and buttons only for the roles that may use them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from decided import release
from fastapi.testclient import TestClient


def _pinned_workspace(ws: Any, model_dir: Path) -> Any:
    """base@1 → support@1 shipped; then base@2 ships: support is pinned to base@1."""
    from loopgate.loop.versions import register_model

    register_model(ws, "base", model_dir)
    release(ws.store, [("base", "production", "base@1")], kind="release", reason="t", actor="t")
    register_model(ws, "support", model_dir)
    release(ws.store, [("support", "production", "support@1")], kind="release", reason="t", actor="t")
    register_model(ws, "base", model_dir)
    release(ws.store, [("base", "production", "base@2")], kind="release", reason="t", actor="t")
    return ws


def test_the_lineage_graph_marks_the_pinned_line_and_pages(workspace: Any, tiny_model_dir: Path) -> None:
    from loopgate.server.dashboard.views import lineage_graph

    ws = _pinned_workspace(workspace, tiny_model_dir)
    g = lineage_graph(ws, 1, 60)
    nodes = {n.line: n for n in g.nodes}
    assert set(nodes) == {"base", "support", "billing", "helpdesk"}
    assert nodes["support"].pinned == "pinned to base@1 (parent ships base@2)"
    assert nodes["base"].pinned == "" and nodes["billing"].pinned == ""
    assert [e.pinned for e in g.edges if e.title.startswith("pinned")] == [True]
    assert nodes["helpdesk"].channels == {"serves": "support@1"}
    first, second = lineage_graph(ws, 1, 2), lineage_graph(ws, 2, 2)
    assert (first.pages, second.pages) == (2, 2)
    assert [n.line for n in first.nodes] + [n.line for n in second.nodes] == ["base", "support", "billing", "helpdesk"]
    assert second.off_page_parents == ["support"]  # billing's and helpdesk's parent is on page 1


def test_pages_show_buttons_only_to_roles_that_may_use_them(workspace: Any, tiny_model_dir: Path) -> None:
    from loopgate.server.app import create_app
    from loopgate.store.tokens import create_token

    _pinned_workspace(workspace, tiny_model_dir)
    app = create_app(workspace.root, gateway=False)
    store = app.state.workspace.store
    tokens = {r: create_token(store, role=r, name=f"{r}-x", actor="t").token for r in ("viewer", "releaser")}
    with TestClient(app) as client:
        page = client.get("/", headers={"Authorization": f"Bearer {tokens['viewer']}"}).text
        assert 'class="edge pinned"' in page and "⚓" in page
        for role, sees in (("viewer", False), ("releaser", True)):
            h = {"Authorization": f"Bearer {tokens[role]}"}
            line = client.get("/lines/base", headers=h).text
            assert ('id="rollback"' in line) is sees, role  # base has a rollback target: base@1
            version = client.get("/versions/support@1", headers=h).text
            assert ('id="approve"' in version) is False  # no approver here
            assert ('id="rollback"' in version) is False  # support has no earlier production version
        r = client.post("/lines/base/rollback", data={"reason": "bad"},
                        headers={"Authorization": f"Bearer {tokens['viewer']}"})
        assert r.status_code == 403 and store.channel("base", "production") == "base@2"
        r = client.post("/lines/base/rollback", data={"reason": "bad"},
                        headers={"Authorization": f"Bearer {tokens['releaser']}"}, follow_redirects=False)
        assert r.status_code == 303 and store.channel("base", "production") == "base@1"
        history = client.get("/lines/base", headers={"Authorization": f"Bearer {tokens['viewer']}"}).text
        assert "rollback" in history and "releaser-x" in history  # the move, its kind and its actor


def test_the_ledger_page_says_each_entry_in_words(workspace: Any, tiny_model_dir: Path) -> None:
    from loopgate.server.app import create_app
    from loopgate.store.tokens import create_token

    _pinned_workspace(workspace, tiny_model_dir)
    app = create_app(workspace.root, gateway=False)
    token = create_token(app.state.workspace.store, role="viewer", name="v", actor="t").token
    with TestClient(app) as client:
        client.post("/ledger/verify", headers={"Authorization": f"Bearer {token}"})
        page = client.get("/ledger", headers={"Authorization": f"Bearer {token}"}).text
    assert "chain intact" in page and "channel.release" in page and "version.create" in page
    assert "{&#34;" not in page and '{"' not in page  # payloads in words, not JSON
