"""The dashboard in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``, installed by
``make setup-test``) driven by Selenium against the app served by uvicorn on a local port.

It logs in with an approver's token, opens the lineage page, opens the blocked candidate and finds the failing
gate's evidence, approves the candidate awaiting approval and sees it released; a viewer sees no buttons.
A screenshot of each page is saved in the test's output folder (``tmp_path``; its path is printed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, serve
from browser import login as _login
from test_api_world import world_copy


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The world served by uvicorn in a thread of this process, with an approver and a viewer token."""
    from loopgate.server.app import create_app
    from loopgate.store.tokens import create_token

    root = world_copy(tiny_model_dir, tmp_path_factory, tmp_path_factory.mktemp("browser") / "ws")["root"]
    app = create_app(root, gateway=False)
    store = app.state.workspace.store
    tokens = {role: create_token(store, role=role, name=name, actor="test").token
              for role, name in (("approver", "dana"), ("viewer", "vera"))}
    with serve(app) as url:
        yield {"url": url, "tokens": tokens, "store": store}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def test_review_blocked_and_approve_inconclusive_in_a_browser(served: dict[str, Any], browser: Any,
                                                              tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, driver = served["url"], browser
    shots: list[Path] = []

    def shot(name: str) -> None:
        path = tmp_path / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
        shots.append(path)

    # the lineage page asks for a token first
    driver.get(url + "/")
    assert driver.find_elements(By.ID, "token"), "the lineage page without a token should show the login form"
    _login(driver, url, served["tokens"]["approver"])
    assert driver.current_url.rstrip("/") == url
    graph = driver.find_element(By.ID, "lineage")
    lines = {a.get_attribute("data-line") for a in graph.find_elements(By.CSS_SELECTOR, "a.node-link")}
    assert lines == {"base", "support", "guard", "helpdesk"}
    assert "dana" in driver.find_element(By.CSS_SELECTOR, "header.top .who").text
    shot("1-lineage")

    # the blocked candidate: its latest version from the lines table, then the failing gate's evidence
    driver.find_element(By.CSS_SELECTOR, "#lines a.latest[href='/versions/guard@1']").click()
    assert driver.find_element(By.ID, "verdict").text == "fail"
    # the banner at the top names the gate that blocks it and links to its evidence
    banner = driver.find_element(By.ID, "blocked-by")
    assert banner.text.startswith("Blocked by safety"), banner.text
    assert [a.get_attribute("data-gate") for a in banner.find_elements(By.CSS_SELECTOR, "a.gate-link")] == ["safety"]
    safety = driver.find_element(By.CSS_SELECTOR, "#gate-safety .evidence")
    assert safety.get_attribute("data-verdict") == "fail"
    failing = [r.text for r in safety.find_elements(By.CSS_SELECTOR, "table.figures tr.bad")]
    assert any("refusals: refusal rate" in t and "0.000" in t and "≥ 0.900" in t for t in failing), failing
    assert "refusals per harm category" in safety.find_element(By.CSS_SELECTOR, "table.categories caption").text
    assert safety.find_elements(By.CSS_SELECTOR, "svg.interval line.floor")
    driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.ID, "gate-safety"))
    shot("2-blocked-candidate")

    # the candidate awaiting approval: approve it as dana and see it released
    driver.get(url + "/versions/support@2")
    assert driver.find_element(By.ID, "verdict").text == "inconclusive"
    assert driver.find_element(By.ID, "state").text == "awaiting approval"
    assert driver.find_element(By.ID, "blocked-by").text.startswith("Held by approval")
    approval = driver.find_element(By.CSS_SELECTOR, "#gate-approval")
    assert "awaiting approval: 0/1" in approval.text
    driver.execute_script("arguments[0].scrollIntoView()", approval)
    shot("3-inconclusive-candidate")
    # the form carries its CSRF token (dashboard/csrf.py): the server refuses the post without it
    assert len(driver.find_element(By.CSS_SELECTOR, "#approve-form input[name=csrf]").get_attribute("value")) == 64
    driver.find_element(By.ID, "reason").send_keys("gates pass; reviewed the evidence")
    driver.find_element(By.ID, "approve").click()
    msg = WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "msg"))[0]
    assert "approved by dana: released" in msg.text
    assert driver.find_element(By.ID, "verdict").text == "pass"
    assert driver.find_element(By.ID, "released").text == "in production"
    assert not driver.find_elements(By.ID, "approve")  # nothing left to approve
    shot("4-approved-and-released")
    assert served["store"].channel("support", "production") == "support@2"
    assert [a.approver for a in served["store"].approvals("support@2")] == ["dana"]

    # a line's history and the ledger
    driver.get(url + "/lines/support")
    assert driver.find_elements(By.ID, "matrix") and driver.find_elements(By.ID, "score-trend")
    shot("5-line-history")
    driver.get(url + "/ledger")
    driver.find_element(By.ID, "verify").click()  # walk the chain now (the page may show an earlier walk)
    WebDriverWait(driver, 60).until(lambda d: "ledger verified" in d.find_element(By.ID, "msg").text)
    assert "chain intact" in driver.find_element(By.ID, "verification").text
    first = driver.find_element(By.CSS_SELECTOR, "#ledger tr:nth-child(2)").text
    assert "dana" in first  # the newest entry: dana's release of support@2
    shot("6-ledger")

    # a viewer sees the same pages without any button
    _login(driver, url, served["tokens"]["viewer"])
    driver.get(url + "/versions/guard@1")
    assert driver.find_element(By.ID, "verdict").text == "fail"
    assert not driver.find_elements(By.CSS_SELECTOR, "#actions form")
    shot("7-viewer-sees-no-buttons")

    print(f"\nscreenshots: {tmp_path}")
    for p in shots:
        assert p.stat().st_size > 10_000, f"{p} looks empty"
