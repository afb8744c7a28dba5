"""loop/lines.py: the lines in the order front ends list them."""

from __future__ import annotations

from typing import Any

from loopgate.loop.lines import tier_order


def test_lines_are_listed_in_tier_order(workspace: Any) -> None:
    assert tier_order(workspace) == ["base", "support", "billing", "helpdesk"]
    assert tier_order(workspace) is tier_order(workspace)  # computed once per open workspace
