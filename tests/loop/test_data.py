"""loop/data.py: the checks on update data, and a line's production history (what replay rehearses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from decided import release
from small_world import with_base

from loopgate.errors import LoopgateError, NotFoundError
from loopgate.loop.data import check_data, history_data, production_history


def test_data_that_does_not_parse_for_the_method_is_refused(workspace: Any, tmp_path: Path) -> None:
    recipe = workspace.eco.recipes["domain-sft"]
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text(json.dumps({"prompt": "abc", "completion": "cba"}) + "\n", encoding="utf-8")
    bad.write_text(json.dumps({"prompt": "abc"}) + "\n", encoding="utf-8")
    check_data([good], recipe)
    with pytest.raises(LoopgateError, match="completion"):
        check_data([bad], recipe)
    with pytest.raises(NotFoundError):
        check_data([tmp_path / "missing.jsonl"], recipe)
    with pytest.raises(LoopgateError, match="folder"):
        check_data([tmp_path], recipe)


def test_the_production_history_is_production_and_what_it_was_built_from(workspace: Any,
                                                                        tiny_model_dir: Path) -> None:
    v1, v2 = with_base(workspace, tiny_model_dir), with_base(workspace, tiny_model_dir)
    assert production_history(workspace, "base") == []
    release(workspace.store, [("base", "production", v1)])
    release(workspace.store, [("base", "production", v2)])
    # a registered version was built from nothing: the history is production alone, never the version before it
    assert [v.id for v in production_history(workspace, "base")] == [v2]
    assert history_data(workspace, "base") == []  # registered versions were trained on no recorded data
