"""loop/context.py: a line's spec, policy and suite names resolved once per command (per workspace and spec)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from small_world import with_base

from loopgate.loop.context import line_context
from loopgate.loop.evaluation import line_suites
from loopgate.spec import Ecosystem


def test_a_line_is_resolved_once_and_says_what_the_spec_says(workspace: Any) -> None:
    ctx = line_context(workspace, "support")
    assert ctx.owned == ("reversal",) and ctx.tier == "industrial" and ctx.spec.parent == "base"
    assert ctx.policy == workspace.eco.policy_for("support")
    assert line_context(workspace, "support") is ctx  # the same answer for the rest of the command
    assert line_suites(workspace, "billing") == (list(line_context(workspace, "billing").owned),
                                                 list(line_context(workspace, "billing").inherited))
    workspace.eco = workspace.eco.model_copy()  # a reloaded spec: resolved again
    assert line_context(workspace, "support") is not ctx


def test_deciding_a_release_merges_the_lines_policy_once(workspace: Any, tiny_model_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy merge (defaults, tier, line) ran once per gate and per channel question before; the decide path
    now reads it from the line's context."""
    from loopgate import loop

    merges: list[str] = []
    real = Ecosystem.policy_for

    def counted(self: Ecosystem, name: str) -> Any:
        merges.append(name)
        return real(self, name)

    monkeypatch.setattr(Ecosystem, "policy_for", counted)
    v = with_base(workspace, tiny_model_dir)
    out = loop.release(workspace, v, actor="alice", propagate=False)
    assert out.decision.gates  # the gates ran
    assert merges.count("base") == 1, merges
