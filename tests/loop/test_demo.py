"""``loopgate demo --quick --seed $LOOPGATE_TEST_SEED``: every verdict of the story is measured on freshly
trained models and asserted here, so a change that breaks a gate breaks the build. The story must hold for
seeds 0, 1 and 2 (tiny-model training outcomes move between machines; a story that holds for one seed only
is luck)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from seed import SEED

from loopgate.cli import main
from loopgate.demo.story import Claim, _followed, ecosystem, margins
from loopgate.demo.world import World
from loopgate.loop.outcomes import PropagationOutcome, ReleaseOutcome
from loopgate.loop.workspace import Workspace
from loopgate.records import Decision, GateResult, Verdict
from loopgate.train.transfer import TransferAttempt


def _step(demo: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(s for s in demo["steps"] if s["step"].startswith(prefix))


def _decision(demo: dict[str, Any], version: str) -> Any:
    return Workspace.open(demo["workspace"]).store.decisions(version)[-1]


def test_the_story_holds_at_every_step(demo: dict[str, Any]) -> None:
    claims = [Claim.model_validate(c) for c in demo["story"]]
    broken = [f"step {c.step}: expected {c.claim}; measured {c.measured}" for c in claims if not c.holds]
    assert demo["story_holds"] and not broken, f"seed {SEED}: " + "\n".join(broken)
    assert demo["seed"] == SEED
    # every step of the story states an outcome: the tree, the domain update, three blocked updates,
    # the foundation upgrade, the rollback and audit
    assert len(claims) == 10, [c.step for c in claims]


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
    # two levels below the foundation, every line re-derived and released: nothing stays pinned
    assert set(transfers) >= {"support", "billing", "returns"}
    ws = Workspace.open(demo["workspace"])
    for line in ("support", "billing", "returns"):
        t = transfers[line]
        assert t["strategy"] is not None and not t["pinned"], t
        assert ws.store.version(t["version"]).source == "transfer"
    # released: still in production, except billing, which step 7 rolls back from exactly that version
    assert ws.store.channel("support", "production") == transfers["support"]["version"]
    assert ws.store.channel("returns", "production") == transfers["returns"]["version"]
    assert demo["rollback"]["from"] == transfers["billing"]["version"]
    assert ws.store.version(transfers["support"]["version"]).parent_version == s["candidate"]
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


# ----------------------------------------------------------------------------- the story's own check (no training)


def _gate(name: str, verdict: Verdict, **evidence: Any) -> GateResult:
    return GateResult(name=name, verdict=verdict, blocking=True, summary=name, evidence=evidence)


def test_margins_are_the_slack_left_before_each_threshold() -> None:
    inheritance = _gate("inheritance", Verdict.passed, thresholds={"tolerance": 0.2}, suites={
        "reverse": {"checks": {"parent": {"delta": -0.05}, "previous": {"delta": 0.0}}}})
    assert sorted(round(m, 3) for m, _ in margins(inheritance)) == [0.15, 0.2]
    regression = _gate("regression", Verdict.failed, thresholds={"tolerance": 0.1, "max_negative_flip_rate": 0.3},
                       suites={"support": {"delta": -0.4, "negative_flip_rate": 0.45}})
    assert sorted(round(m, 3) for m, _ in margins(regression)) == [-0.3, -0.15]
    # 6 one-way flips are significant at α 0.05 (2 × 0.5⁶ = 0.031): 4 leave one to spare out of 25 prompts
    safety = _gate("safety", Verdict.passed, thresholds={"min_refusal_rate": 0.8, "max_safety_flips": 0, "alpha": 0.05},
                   suites={"safety": {"refusal_rate": 0.92, "unsafe_flips": 4, "safe_flips": 0,
                                      "n_expected_refusals": 25}})
    assert [round(m, 3) for m, _ in margins(safety)] == [0.12, 0.04]
    cost = _gate("cost", Verdict.failed, checks=[
        {"figure": "mean_output_tokens", "kind": "ratio", "limit": 2.0, "value": 5.0, "suite": "support"},
        {"figure": "tokens_per_s", "kind": "absolute", "limit": 100.0, "value": 150.0}])
    assert [round(m, 3) for m, _ in margins(cost)] == [-1.5, 0.5]


def test_a_pinned_line_breaks_the_upgrade_story_and_says_why() -> None:
    decision = Decision(version="base@2", verdict=Verdict.passed, gates=[], policy_sha256="")
    rejected = TransferAttempt(strategy="rerun", accepted=False, wall_s=1.0,
                               reason="inheritance: fail — reverse: vs parent base@2: Δ -0.40")
    o = ReleaseOutcome(version="base@2", decision=decision, released=True, propagation=[
        PropagationOutcome(line="support", to_parent="base@2", attempts=[rejected], pinned=True,
                           note="every strategy failed; stays on base@1")])
    holds, measured = _followed(o, ["support", "billing"])
    assert not holds
    assert "support: pinned" in measured and "rerun: inheritance: fail" in measured
    assert "billing: not re-derived" in measured


def test_the_cli_exits_1_when_the_story_does_not_hold(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import loopgate.demo

    seen: dict[str, Any] = {}

    def fake_demo(workspace: Path, **kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        return {"story_holds": False}

    monkeypatch.setattr(loopgate.demo, "run_demo", fake_demo)
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--workspace", str(tmp_path / "ws"), "--seed", "7", "--quick"])
    assert exc.value.code == 1 and seen["seed"] == 7 and seen["quick"] is True


def test_the_seed_reaches_every_recipe_and_the_world() -> None:
    eco = ecosystem(quick=True, seed=5)
    assert {r["seed"] for r in eco["recipes"].values()} == {5}
    a, b = World(1), World(2)
    assert a.train != b.train and a.harmful_eval != b.harmful_eval
    # a held-out request is a new combination of trained words: every object is also trained
    for world in (a, b):
        trained = {req.split(" ", 1)[1] for _, req in world.harmful_train + world.benign_train}
        assert all(req.split(" ", 1)[1] in trained for _, req in world.harmful_eval + world.benign_eval)
