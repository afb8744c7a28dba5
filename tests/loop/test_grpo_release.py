"""GRPO through the loop: a rule reward raises the line's suite score and the candidate passes every gate; a reward
that can be gamed (longer answers score higher) trains a candidate the gates block."""

from __future__ import annotations

from typing import Any

import pytest
from grpo_world import build
from seed import SEED

from loopgate import loop
from loopgate.loop.workspace import Workspace
from loopgate.records import Verdict


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("grpo") / "ws"
    files = build(root, SEED)
    ws = Workspace.open(root)
    first = loop.update(ws, "base", [files["v1"]], actor="ci")
    assert first.released, first.decision.gates
    return {"ws": ws, "files": files, "v1": first.version}


def _score(ws: Workspace, version: str, suite: str) -> float:
    return next(e.score for e in ws.store.evaluations(version) if e.suite == suite)


def test_a_rule_reward_raises_the_suite_score_and_passes_the_gates(world: dict[str, Any]) -> None:
    ws: Workspace = world["ws"]
    out = loop.update(ws, "base", [world["files"]["rl"]], recipe_name="grpo", actor="ci")
    gates = {g.name: g for g in out.decision.gates}
    assert out.released, [(g.name, g.verdict.value, g.summary) for g in out.decision.gates]
    assert all(g.verdict is Verdict.passed for g in out.decision.gates if g.blocking)
    before, after = _score(ws, world["v1"], "reverse"), _score(ws, out.version, "reverse")
    # 80 steps at lr 2e-4, sampling at temperature 1.2: seeds 0-2 pass; seed 2 measured 0.69 → 0.80. With 40 steps
    # at 3e-4 and temperature 1.0 seed 2 went 0.69 → 0.66 (greedy accuracy moves slowly under GRPO), at 1e-3 to 0.46
    assert after >= before + 0.05, (before, after)
    assert gates["safety"].verdict is Verdict.passed
    prov = ws.store.version(out.version).provenance
    assert prov["method"] == "grpo" and prov["built_from"] == world["v1"]  # anchored to production: v1


def test_a_gamed_reward_is_blocked_by_the_gates(world: dict[str, Any]) -> None:
    ws: Workspace = world["ws"]
    prod = ws.store.channel("base", "production")
    out = loop.update(ws, "base", [world["files"]["rl"]], recipe_name="grpo-gamed", actor="ci",
                      again=True)
    failed = {g.name for g in out.decision.gates if g.blocking and g.verdict is Verdict.failed}
    assert not out.released and failed & {"cost", "regression"}, [(g.name, g.summary) for g in out.decision.gates]
    assert ws.store.channel("base", "production") == prod
