"""loop/outcomes.py: an outcome serialises the same way everywhere and reads back as itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from small_world import with_base

from loopgate.loop.outcomes import StatusRow
from loopgate.loop.versions import ecosystem_status


def test_status_rows_round_trip_through_json(workspace: Any, tiny_model_dir: Path) -> None:
    v = with_base(workspace, tiny_model_dir)
    rows = ecosystem_status(workspace)
    assert {r.line for r in rows} == {"base", "support", "billing", "helpdesk"}
    assert next(r for r in rows if r.line == "base").latest == v
    again = [StatusRow.model_validate(json.loads(r.model_dump_json())) for r in rows]
    assert again == rows
