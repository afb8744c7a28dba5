"""loop/architecture.py: a version's architecture read from its stored config, and what differs between two."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from small_world import with_base

from loopgate.loop.architecture import architecture, architecture_warning, differences


def test_a_registered_version_reports_its_shape(workspace: Any, tiny_model_dir: Path) -> None:
    v = with_base(workspace, tiny_model_dir)
    arch = architecture(workspace, v)
    assert arch is not None and arch["hidden_size"] == 32 and arch["num_hidden_layers"] == 2
    assert differences(arch, arch) == {}
    wider = {**arch, "hidden_size": 64}
    assert differences(arch, wider) == {"hidden_size": (32, 64)}
    assert architecture_warning(workspace, v) == ""  # the line's first version: nothing to differ from
