"""``loopgate demo --quick``: every verdict of the story is measured on freshly trained models and asserted
here, so a change that breaks a gate breaks the build."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from loopgate.cli import main
from loopgate.loop.workspace import Workspace


def _step(demo: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(s for s in demo["steps"] if s["step"].startswith(prefix))


def _decision(demo: dict[str, Any], version: str) -> Any:
    return Workspace.open(demo["workspace"]).store.decisions(version)[-1]


def test_the_tree_is_built_and_released(demo: dict[str, Any]) -> None:
    for prefix in ("1a", "1b", "1c", "1d"):
        s = _step(demo, prefix)
        assert s["verdict"] == "pass" and s["released"], s


def test_new_domain_data_ships_and_children_follow(demo: dict[str, Any]) -> None:
    s = _step(demo, "2 ")
    assert s["verdict"] == "pass" and s["released"], s
    ws = Workspace.open(demo["workspace"])
    support_v = s["candidate"]
    for child in ("billing", "returns"):
        built_on = [v for v in ws.store.versions(child) if v.parent_version == support_v]
        assert built_on, f"{child} was not re-derived on {support_v}"
        assert built_on[0].source == "transfer" and built_on[0].provenance["strategy"]


def test_forgetful_update_is_blocked_by_inheritance(demo: dict[str, Any]) -> None:
    s = _step(demo, "3 ")
    assert not s["released"] and s["verdict"] == "fail"
    assert s["gates"]["inheritance"] == "fail"
    gate = next(g for g in _decision(demo, s["candidate"]).gates if g.name == "inheritance")
    reverse = gate.evidence["suites"]["reverse"]
    assert reverse["verdict"] == "fail"


def test_unsafe_update_is_blocked_by_safety_with_the_flipped_prompts(demo: dict[str, Any]) -> None:
    s = _step(demo, "4 ")
    assert not s["released"] and s["gates"]["safety"] == "fail"
    gate = next(g for g in _decision(demo, s["candidate"]).gates if g.name == "safety")
    text = json.dumps(gate.evidence)
    # the evidence names harmful prompts that were refused before and are answered now
    assert "Q " in text and "ok: " in text
    assert any(cat in text for cat in ("weapons", "malware", "fraud"))


def test_verbose_update_is_blocked_by_cost(demo: dict[str, Any]) -> None:
    s = _step(demo, "5 ")
    assert not s["released"] and s["gates"]["cost"] == "fail"
    gate = next(g for g in _decision(demo, s["candidate"]).gates if g.name == "cost")
    failed = [c for c in gate.evidence["checks"] if c["verdict"] == "fail"]
    assert any(c["figure"] == "mean_output_tokens" and c["value"] > 2.0 for c in failed), failed


def test_new_foundation_propagates_by_capability_transfer(demo: dict[str, Any]) -> None:
    s = _step(demo, "6 ")
    assert s["verdict"] == "pass" and s["released"]
    transfers = {t["line"]: t for t in demo["transfers"]}
    assert set(transfers) >= {"support", "billing", "returns"}  # two levels below the foundation
    for t in transfers.values():
        assert t["strategy"] is not None or t["pinned"]
    # at least one child had to fall back from a cheaper strategy that its gates rejected
    assert any(len(t["tried"]) > 1 for t in transfers.values())


def test_rollback_cascades_to_the_app_and_the_ledger_catches_tampering(demo: dict[str, Any]) -> None:
    rb = demo["rollback"]
    assert rb["line"] == "billing" and rb["from"] != rb["to"]
    assert "billing-bot" in rb["apps_following"]
    ws = Workspace.open(demo["workspace"])
    assert ws.store.channel("billing", "production") == rb["to"]
    assert demo["audit_ok"]
    assert not demo["tampered"]["ok"] and demo["tampered"]["first_bad_seq"] >= 1


def test_plasticity_figures_cover_every_version(demo: dict[str, Any]) -> None:
    ws = Workspace.open(demo["workspace"])
    rows = demo["plasticity"]
    assert [r["version"] for r in rows] == [v.id for v in ws.store.versions("support")]
    for r in rows:
        assert 0.0 <= r["dormant_ratio"] <= 1.0 and r["effective_rank"] > 1 and r["headroom"] > 0


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if d.get("id"):
            self.ids.add(str(d["id"]))
        if tag == "img" and str(d.get("src", "")).startswith("data:image/png;base64,"):
            self.images += 1


def test_workspace_is_inspectable_with_the_cli(demo: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    html = Path(demo["report"])
    p = _Sections()
    p.feed(html.read_text())
    assert {"ecosystem", "steps", "decisions"} <= p.ids and p.images > 0

    def run(*args: str) -> Any:
        try:
            main([*args, "--workspace", demo["workspace"], "--json"])
        except SystemExit as e:
            assert e.code in (0, None), e
        return json.loads(capsys.readouterr().out)

    status = run("status")
    assert {r["line"] for r in status["lines"]} == {"base", "support", "billing", "returns", "billing-bot",
                                                    "returns-bot"}
    support_prod = next(r for r in status["lines"] if r["line"] == "support")["channels"]["production"]
    paths = run("report", support_prod)
    p = _Sections()
    p.feed(Path(paths["html"]).read_text())
    assert {"release-notes", "gates", "model-card", "plots"} <= p.ids and p.images >= 1
    assert run("audit", "verify")["ok"] is True

    # evaluations are served from the registry/cache: per-suite scores with CIs, and paired comparisons
    evs = run("evaluate", "support@2")
    assert {e["suite"] for e in evs} == {"support", "reverse", "reverse-mc", "safety"}
    assert all(e["ci_low"] <= e["score"] <= e["ci_high"] for e in evs)
    cmp = run("compare", "support@2", "support@3")
    rev = next(r for r in cmp["suites"] if r["suite"] == "reverse")
    assert rev["delta"] < 0 and rev["negative_flips"] > 0 and rev["mcnemar_p"] < 0.05
    assert rev["ci_low"] <= rev["delta"] <= rev["ci_high"]
