"""loop/updating.py: what ``loopgate update`` refuses before anything is trained or recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loopgate import loop
from loopgate.errors import LoopgateError
from loopgate.loop.updating import check_seed, run_key


def test_a_bad_seed_or_an_app_is_refused_and_nothing_is_recorded(workspace: Any, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "abc", "completion": "cba"}) + "\n", encoding="utf-8")
    before = len(workspace.store.ledger())
    with pytest.raises(LoopgateError, match="out of range"):
        loop.update(workspace, "base", [data], seed=-1, actor="ci")
    with pytest.raises(LoopgateError, match="is an app"):
        loop.update(workspace, "helpdesk", [data], actor="ci")
    assert len(workspace.store.ledger()) == before
    check_seed(0)
    assert run_key("base", [1, 2]) == run_key("base", [1, 2]) != run_key("base", [2, 1])
