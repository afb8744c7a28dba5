"""The release manager's view of the demo (issue 24), in a real browser: headless Chromium driven by Selenium
against the dashboard served by uvicorn on a copy of the ``loopgate demo --quick`` workspace.

On the copy, the demo's verbose support update (step 5 of the story, blocked by cost) is registered again and
released through the real gates, so support's newest candidate is blocked while production (the support
version the new foundation brought) is healthy — the case the lineage graph used to paint red. The test
then checks, page by page:

- a blocked candidate's page opens with a banner naming its failing gates, linked to their evidence below;
- the lineage graph is filled by production's health (support green, billing orange after the demo's
  rollback), and support's newest candidate carries its own fail mark;
- the line page marks each version shipped / blocked;
- the ledger filtered to ``channel.rollback`` lists only rollback entries.

Screenshots are saved in the test's tmp folder and their paths printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, login, serve

from loopgate import loop
from loopgate.loop.versions import register_model
from loopgate.loop.workspace import Workspace
from loopgate.records import Verdict

RED_FILL = "rgb(255, 235, 233)"  # the old "latest candidate failed" fill (#ffebe9)
HEALTHY_FILL = "rgb(218, 251, 225)"  # production healthy (#dafbe1)
ROLLED_BACK_FILL = "rgb(255, 216, 181)"  # production rolled back (#ffd8b5)
MARK_RED = "rgb(207, 34, 46)"  # a blocked candidate's mark (#cf222e)


@pytest.fixture
def blocked_again(demo: dict[str, Any], ws_copy: Workspace) -> dict[str, Any]:
    """The copy with support's verbose update (step 5 of the story) registered again and gated as a new
    candidate."""
    ws = ws_copy
    steps = {s["step"].split()[0]: s for s in demo["steps"]}
    verbose, shipped = steps["5"]["candidate"], steps["2"]["candidate"]
    production = ws.store.channel("support")
    assert production not in (None, shipped), "the story changed: the new foundation should bring a new support"
    version = register_model(ws, "support", ws.store.checkout(verbose), actor="bob", note="the verbose update, again")
    out = loop.release(ws, version.id, actor="bob")
    assert not out.released and out.decision.verdict is Verdict.failed, out.decision.verdict
    failing = [g.name for g in out.decision.gates if g.verdict is Verdict.failed and g.blocking]
    assert "cost" in failing, failing
    return {"ws": ws, "candidate": version.id, "failing": failing, "verbose": verbose, "shipped": shipped,
            "production": production}


@pytest.fixture
def site(blocked_again: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    from loopgate.server.app import create_app
    from loopgate.store.tokens import create_token

    app = create_app(blocked_again["ws"].root, gateway=False)
    token = create_token(app.state.workspace.store, role="viewer", name="rita", actor="test").token
    with serve(app) as url, chromium(tmp_path / "chromium-profile") as driver:
        login(driver, url, token)
        yield {**blocked_again, "url": url, "driver": driver, "store": app.state.workspace.store}


def _fill(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).value_of_css_property("fill"))


def test_the_release_managers_view_of_the_demo(site: dict[str, Any], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    url, driver, candidate, production = site["url"], site["driver"], site["candidate"], site["production"]
    shots: list[Path] = []

    def shot(name: str) -> None:
        path = tmp_path / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
        shots.append(path)

    # 1. lineage: filled by production's health; the newest candidate's verdict is a separate mark
    driver.get(url + "/")
    support = "a.node-link[data-line='support'] rect.node"
    assert driver.find_element(By.CSS_SELECTOR, support).get_attribute("data-health") == "healthy"
    assert _fill(driver, support) == HEALTHY_FILL != RED_FILL
    mark = driver.find_element(By.CSS_SELECTOR, "a.candidate-mark[data-line='support']")
    assert (mark.get_attribute("data-version"), mark.get_attribute("data-state")) == (candidate, "blocked")
    assert _fill(driver, "a.candidate-mark[data-line='support'] circle") == MARK_RED
    assert "blocked by cost" in mark.find_element(By.TAG_NAME, "title").get_attribute("textContent")
    billing = "a.node-link[data-line='billing'] rect.node"  # step 7 of the story rolled billing back
    assert driver.find_element(By.CSS_SELECTOR, billing).get_attribute("data-health") == "rolled back"
    assert _fill(driver, billing) == ROLLED_BACK_FILL
    row = driver.find_element(By.CSS_SELECTOR, "#lines tr[data-line='support']")
    assert production in row.text
    assert row.find_element(By.CSS_SELECTOR, "td.health").text == "healthy"
    assert row.find_element(By.CSS_SELECTOR, "td.candidate").text.startswith("blocked by cost")
    shot("1-lineage-production-health")

    # 2. the blocked candidate: the banner at the top names its failing gates and links to their evidence
    driver.get(url + f"/versions/{candidate}")
    banner = driver.find_element(By.ID, "blocked-by")
    links = banner.find_elements(By.CSS_SELECTOR, "a.gate-link")
    assert [a.get_attribute("data-gate") for a in links] == site["failing"]
    assert banner.text.startswith("Blocked by " + ", ".join(site["failing"])), banner.text
    assert f"production stays on {production}" in banner.text
    assert banner.location["y"] < 300, "the banner should be at the top of the page"
    gate = driver.find_element(By.ID, "gate-cost")
    assert gate.location["y"] > 1000, "the cost evidence is further down the page"
    shot("2-blocked-candidate-banner")
    next(a for a in links if a.get_attribute("data-gate") == "cost").click()
    assert driver.current_url.endswith("#gate-cost")
    top = driver.execute_script("return arguments[0].getBoundingClientRect().top", gate)
    assert 0 <= top < 200, f"the link should scroll to the cost evidence (its top is at {top} px)"
    bad = gate.find_elements(By.CSS_SELECTOR, "table.figures tr.bad")
    assert any("mean_output_tokens" in r.text for r in bad), [r.text for r in bad]
    shot("3-failing-evidence")

    # the demo's own blocked update (step 5) says the same, and so does its line's page
    driver.get(url + f"/versions/{site['verbose']}")
    assert driver.find_element(By.ID, "blocked-by").text.startswith("Blocked by cost")
    driver.get(url + "/lines/support")
    states = {r.get_attribute("data-version"): r.get_attribute("data-state")
              for r in driver.find_elements(By.CSS_SELECTOR, "#versions tr[data-version]")}
    assert states[production] == "production" and states[site["verbose"]] == "blocked"
    assert states[candidate] == "blocked" and states[site["shipped"]] == "superseded"
    verbose_row = driver.find_element(By.CSS_SELECTOR, f"#versions tr[data-version='{site['verbose']}']")
    assert "blocked by cost" in verbose_row.text
    line_state = driver.find_element(By.ID, "line-state").text
    assert line_state.startswith(f"Production: {production} healthy"), line_state
    assert f"newest candidate {candidate} blocked by cost" in line_state
    shot("4-line-marks")

    # 3. the ledger filtered to rollbacks, through its form
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(url + "/ledger")
    Select(driver.find_element(By.ID, "filter-kind")).select_by_visible_text("channel.rollback")
    driver.find_element(By.ID, "filter").click()
    # the form submits a new page load: wait for the filtered page, not the one the click left
    WebDriverWait(driver, 30).until(lambda d: "kind=channel.rollback" in d.current_url
                                    and d.execute_script("return document.readyState") == "complete")
    rows = driver.find_elements(By.CSS_SELECTOR, "#ledger tr:not(:first-child)")
    kinds = [r.find_elements(By.TAG_NAME, "td")[3].text for r in rows]
    expected = [e for e in site["store"].ledger() if e.kind == "channel.rollback"]
    assert kinds == ["channel.rollback"] * len(expected) and len(expected) >= 1
    assert "billing/production" in rows[0].text and "INC-1042" in rows[0].text
    assert "kind=channel.rollback" in driver.current_url
    all_entries = len(site["store"].ledger())
    assert f"{len(expected)} of {all_entries} entries of kind channel.rollback" in driver.find_element(
        By.ID, "ledger-count").text
    shot("5-ledger-rollbacks")
    driver.get(url + "/ledger?kind=no.such.kind")
    assert "no ledger entry has kind 'no.such.kind'" in driver.find_element(By.ID, "filter-error").text

    print(f"\nscreenshots: {tmp_path}")
    for p in shots:
        print(f"  {p}")
        assert p.stat().st_size > 10_000, f"{p} looks empty"
