"""Dashboard pages from a real registry without a browser: pinned lines in the lineage graph, paging, the
line history's forgetting matrix, and buttons only for the roles that may use them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from decided import release
from fastapi.testclient import TestClient
from pg import both_databases


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


@both_databases
def test_the_ledger_page_filters_by_kind_and_actor_and_refuses_unknown_ones(workspace: Any,
                                                                           tiny_model_dir: Path) -> None:
    from loopgate.server.app import create_app
    from loopgate.store.tokens import create_token

    _pinned_workspace(workspace, tiny_model_dir)
    release(workspace.store, [("base", "production", "base@1")], kind="rollback", reason="INC-1", actor="oncall")
    app = create_app(workspace.root, gateway=False)
    h = {"Authorization": f"Bearer {create_token(app.state.workspace.store, role='viewer', name='v', actor='t').token}"}
    with TestClient(app) as client:
        page = client.get("/ledger?kind=channel.rollback", headers=h)
        assert page.status_code == 200
        kinds = re.findall(r"<td>(channel\.\w+|decision|version\.create|token\.create|line\.register)</td>", page.text)
        assert kinds == ["channel.rollback"] and "INC-1" in page.text and "1 of " in page.text
        mine = client.get("/ledger?actor=oncall", headers=h).text
        assert "oncall" in mine and "<td>t</td>" not in mine  # the token was created by actor t
        for query, said in (("kind=no.such", "no ledger entry has kind &#39;no.such&#39;"),
                            ("actor=nobody", "no ledger entry was written by &#39;nobody&#39;"),
                            ("actor=%00x", "no ledger entry was written by &#39;\\\\x00x&#39;"),
                            ("kind=%ED%A0%80", "no ledger entry has kind"),
                            ("actor=" + "a" * 5000, "no ledger entry was written by")):
            r = client.get(f"/ledger?{query}", headers=h)
            assert r.status_code == 400 and said in r.text, (query, r.status_code, r.text[-600:])
            assert 'id="ledger-filter"' in r.text and "Traceback" not in r.text


def test_a_version_page_opens_with_what_blocks_it_and_the_line_marks_each_version(workspace: Any,
                                                                                  tiny_model_dir: Path) -> None:
    from loopgate.loop.versions import register_model
    from loopgate.records import Decision, GateResult, Verdict
    from loopgate.server.app import create_app
    from loopgate.store.tokens import create_token

    ws = _pinned_workspace(workspace, tiny_model_dir)
    register_model(ws, "support", tiny_model_dir)  # support@2, blocked by cost (plasticity only warns)
    ws.store.add_decision(Decision(version="support@2", verdict=Verdict.failed, policy_sha256="p" * 64, gates=[
        GateResult(name="regression", verdict=Verdict.passed, summary="holds"),
        GateResult(name="cost", verdict=Verdict.failed, summary="mean_output_tokens ratio 10.9 vs limit 2.0"),
        GateResult(name="plasticity", verdict=Verdict.failed, blocking=False, summary="headroom low")]))
    app = create_app(workspace.root, gateway=False)
    h = {"Authorization": f"Bearer {create_token(app.state.workspace.store, role='viewer', name='v', actor='t').token}"}
    with TestClient(app) as client:
        page = client.get("/versions/support@2", headers=h).text
        banner = page[page.index('id="blocked-by"'):page.index("</section>", page.index('id="blocked-by"'))]
        assert re.findall(r'class="gate-link" data-gate="(\w+)"', banner) == ["cost"]
        assert 'href="#gate-cost"' in banner and "mean_output_tokens ratio 10.9" in banner
        assert "production stays on" in banner and "support@1" in banner
        assert page.index('id="blocked-by"') < page.index("<h2>Evaluations</h2>")
        assert page.index('id="blocked-by"') < page.index('id="gate-cost"')
        assert 'id="state">blocked by cost<' in page
        shipped = client.get("/versions/support@1", headers=h).text
        assert 'id="blocked-by"' not in shipped and 'id="pinned">pinned to base@1 (parent ships base@2)' in shipped
        line = client.get("/lines/support", headers=h).text
        assert re.search(r'data-version="support@2" data-state="blocked">.*?blocked by cost', line, re.S)
        assert re.search(r'data-version="support@1" data-state="production">.*?in production', line, re.S)
        at = line.index('id="line-state"')
        said = re.sub(r" +", " ", re.sub(r"<[^>]+>|\s+", " ", line[at:line.index("</p>", at)]))
        assert "healthy" in said and "newest candidate support@2 blocked by cost" in said
        lineage = client.get("/", headers=h).text
        node = re.search(r'data-line="support">\s*<rect class="node (\w+)', lineage)
        assert node is not None and node.group(1) == "healthy"  # not red: production is fine
        mark = re.search(r'class="candidate-mark" data-line="support" data-version="support@2" '
                         r'data-state="blocked">\s*<circle class="mark blocked"', lineage)
        assert mark is not None
