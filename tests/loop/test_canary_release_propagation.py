"""With ``release.canary`` on, an update moves only its line's ``canary`` channel, and the downstream wave waits
for production (issue 26, item 5): a child is re-derived onto a version only once production holds it, as
``loopgate release`` and ``loopgate promote`` already did.

The plumbing world of tests/conftest.py (an untrained tiny model, 5-step SFT), with a canary on ``support``:
what is asserted is where channels point and which versions exist, not what the models learnt.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loopgate.loop.workspace import Workspace

Cli = Callable[..., Any]
SPEC = """\
name: canary-eco
suites:
  reversal:
    path: suites/reversal.jsonl
recipes:
  domain-sft:
    method: sft
    steps: 5
lines:
  base:
    tier: foundation
  support:
    tier: industrial
    parent: base
    recipe: domain-sft
    suites: [reversal]
  billing:
    tier: application
    parent: support
    recipe: domain-sft
policy:
  # three untrained-model examples decide nothing: every candidate here passes whatever it scores
  defaults:
    regression: {min_examples: 0, tolerance: 1.0, max_negative_flip_rate: 1.0}
    inheritance: {min_examples: 0, tolerance: 1.0}
  lines:
    support:
      release: {canary: true}
"""


def _data(path: Path, words: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"reverse: {w}\n=>", "completion": w[::-1]}) + "\n"
                            for w in words), encoding="utf-8")
    return path


def test_an_update_released_to_canary_only_re_derives_no_child(tmp_path: Path, tiny_model_dir: Path,
                                                               cli: Cli) -> None:
    ws, _ = Workspace.init(tmp_path / "ws", spec_text=SPEC)
    root = ws.root
    (root / "suites").mkdir()
    (root / "suites/reversal.jsonl").write_text(
        "".join(json.dumps({"id": w, "prompt": f"reverse: {w}\n=>", "target": w[::-1]}) + "\n"
                for w in ("abc", "dog", "sun")), encoding="utf-8")
    assert cli("register", "base", "--model", tiny_model_dir, workspace=root).code == 0
    assert cli("release", "base@1", workspace=root).code == 0
    # support's first release has no production to hold a canary against: it goes straight to production
    first = cli("update", "support", "--data", _data(root / "s1.jsonl", ["abc", "dog"]), "--json", workspace=root)
    assert first.code == 0 and first.json()["released_to"] == "production", (first.out, first.err)
    child = cli("update", "billing", "--data", _data(root / "b1.jsonl", ["sun"]), "--json", workspace=root)
    assert child.code == 0 and ws.store.channel("billing", "production") == "billing@1", (child.out, child.err)
    assert ws.store.version("billing@1").parent_version == "support@1"

    # the next update of support passes its gates and is released to canary only: billing is not re-derived
    res = cli("update", "support", "--data", _data(root / "s2.jsonl", ["sun", "cat"]), workspace=root)
    assert res.code == 0, (res.out, res.err)
    text = " ".join(res.out.split())
    assert "support@2" in text and "released to canary" in text and "released to production" not in text, text
    assert ws.store.channels("support") == {"staging": None, "canary": "support@2", "production": "support@1"}
    assert [v.id for v in ws.store.versions("billing")] == ["billing@1"]
    assert ws.store.channel("billing", "production") == "billing@1"

    res = cli("update", "support", "--data", _data(root / "s3.jsonl", ["red", "map"]), "--json", workspace=root)
    assert res.code == 0, (res.out, res.err)
    out = res.json()
    assert out["version"] == "support@3" and out["released"] and out["released_to"] == "canary"
    assert [m["channel"] for m in out["channel_moves"]] == ["canary"] and out["propagation"] == []
    assert [v.id for v in ws.store.versions("billing")] == ["billing@1"]
    # production follows (here by promote): only now does the wave re-derive billing onto support@3
    promoted = cli("promote", "support@3", "--json", workspace=root)
    assert promoted.code == 0, (promoted.out, promoted.err)
    assert [p["line"] for p in promoted.json()["propagation"]] == ["billing"]
    assert ws.store.version(ws.store.versions("billing")[-1].id).parent_version == "support@3"
