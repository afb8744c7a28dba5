"""loop/canary.py: which version answers a request of a line with a live canary (the split, sticky per user)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from decided import release
from small_world import with_base

from loopgate.errors import LoopgateError
from loopgate.loop.canary import LineState, line_state, pick, sticky_share


def _state(**kw: Any) -> LineState:
    return LineState(**{"line": "base", "production": "base@1", "canary": "base@2", "active": True, "weight": 0.3,
                        "shadow": False, "since": None, **kw})


def test_a_live_canary_takes_its_share_and_each_user_stays_on_one_side() -> None:
    state = _state()
    picked = [pick(state, f"user-{i}")[1] for i in range(2000)]
    share = picked.count("canary") / len(picked)
    assert 0.25 < share < 0.35  # 30 % asked; 2000 users: a standard error of 1 %
    assert all(pick(state, f"user-{i}")[1] == picked[i] for i in range(200))  # sticky
    assert sticky_share("base", "base@2", "u", key_id=1) != sticky_share("base", "base@2", "u", key_id=2)


def test_a_shadow_canary_answers_nobody_and_no_production_is_an_error() -> None:
    assert {pick(_state(shadow=True), f"u{i}") for i in range(50)} == {("base@1", "production", "base@2")}
    assert pick(_state(active=False), "u") == ("base@1", "production", None)
    with pytest.raises(LoopgateError, match="no production version"):
        pick(_state(production=None), "u")


def test_line_state_reads_the_channels(workspace: Any, tiny_model_dir: Path) -> None:
    v1, v2 = with_base(workspace, tiny_model_dir), with_base(workspace, tiny_model_dir)
    release(workspace.store, [("base", "production", v1)])
    assert line_state(workspace, "base").active is False
    release(workspace.store, [("base", "canary", v2)])
    st = line_state(workspace, "base")
    assert (st.production, st.canary, st.active) == (v1, v2, True)
