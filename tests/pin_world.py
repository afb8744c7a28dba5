"""A small real world for pinned lines and report marks: base → support → billing, each released on the
untrained tiny model by the real gates, and base@2 registered, ready to ship (no training anywhere: the
children move by diff-vector transfer, which only adds tensors).

- ``base@1``, ``support@1`` (on base@1) and ``billing@1`` (on support@1) in production;
- ``base@2`` registered (the same weights: a re-derived child passes inheritance and regression exactly), not
  released yet: releasing it runs the wave.

Cost and plasticity are warnings only (they measure speed and a probe fine-tune, which this world is not about);
regression, inheritance and safety decide every release and every re-derivation, as they would anywhere.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

PIN_SPEC = """\
name: pin-eco
suites:
  chat: {path: suites/chat.jsonl, max_new_tokens: 4}
lines:
  base:
    tier: foundation
    suites: [chat]
  support:
    tier: industrial
    parent: base
    transfer: [diff_vector]
  billing:
    tier: application
    parent: support
    transfer: [diff_vector]
  helpdesk:
    tier: app
    parent: support
    app: {prompt_template: "Q: {input}\\nA:"}
policy:
  defaults:
    cost: {blocking: false}
    plasticity: {blocking: false, probe_steps: 2}
"""

_BUILT: dict[str, Path] = {}


def build_pin_world(root: Path, model_dir: Path) -> None:
    """Build the world (module docstring) in ``root``."""
    from loopgate import loop
    from loopgate.loop.workspace import Workspace

    (root / "suites").mkdir(parents=True)
    rows = [{"id": f"c{i}", "prompt": f"echo: w{i}\n=> ", "target": f"w{i}"} for i in range(24)]
    (root / "suites" / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ws, _ = Workspace.init(root, spec_text=PIN_SPEC)
    for line in ("base", "support", "billing"):
        v = loop.register_model(ws, line, model_dir, actor="bob")
        assert loop.release(ws, v.id, actor="bob", propagate=False).released, v.id
    loop.register_model(ws, "base", model_dir, actor="bob")
    ws.store.close()


def pin_world_copy(model_dir: Path, base_temp: Path, dest: Path) -> Path:
    """A private copy of the world in ``dest`` (built once per test session, SQLite)."""
    key = str(model_dir)
    if key not in _BUILT:
        root = base_temp / "pin-world" / "ws"
        build_pin_world(root, model_dir)
        _BUILT[key] = root
    shutil.copytree(_BUILT[key], dest)
    return dest
