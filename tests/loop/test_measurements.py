"""loop/measurements.py: the rollback target the rollback gate reads — it exists, verifies and loads again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from small_world import with_base

from loopgate.loop.measurements import rollback_check


def test_a_registered_target_loads_and_a_missing_one_is_said_to_be_missing(workspace: Any,
                                                                           tiny_model_dir: Path) -> None:
    v = with_base(workspace, tiny_model_dir)
    assert rollback_check(workspace, None, None).target is None
    ok = rollback_check(workspace, v, None)
    assert (ok.exists, ok.hashes_ok, ok.loads, ok.error) == (True, True, True, None)
    gone = rollback_check(workspace, "base@9", None)
    assert gone.exists is False and "base@9" in (gone.error or "")
