"""A propagation wave evaluates the adapter children it re-attaches through one loaded base, never merged (#22):
the gateway's shared-base path (``loopgate.evaluate.adapters``), with the same verdicts as merged copies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SPEC = """\
name: adapters-eco
suites:
  chat: {path: suites/chat.jsonl, max_new_tokens: 4}
lines:
  base: {tier: foundation, suites: [chat]}
  support: {tier: industrial, parent: base, transfer: [reattach]}
  sales: {tier: industrial, parent: base, transfer: [reattach]}
policy:
  defaults:
    cost: {blocking: false}
    plasticity: {blocking: false, probe_steps: 2}
"""


def _adapter(base_dir: Path, out: Path, seed: int) -> Path:
    """A real peft LoRA adapter on the base with small random weights (no training: the wave only re-attaches)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from loopgate.models import load_model

    torch.manual_seed(seed)
    model = get_peft_model(load_model(base_dir).model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                  init_lora_weights=False))
    model.save_pretrained(str(out))
    return out


def _nudged(model_dir: Path, out: Path) -> Path:
    """The tiny model with every weight moved a little: a new foundation version with other weights."""
    import torch

    from loopgate.models import load_model, save_model

    loaded = load_model(model_dir)
    torch.manual_seed(7)
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    return save_model(loaded.model, loaded.tokenizer, out)


def test_a_wave_evaluates_re_attached_adapters_on_one_shared_base(tmp_path: Path, tiny_model_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from loopgate import loop
    from loopgate.evaluate import adapters as shared_path
    from loopgate.loop.workspace import Workspace

    root = tmp_path / "ws"
    (root / "suites").mkdir(parents=True)
    rows = [{"id": f"c{i}", "prompt": f"echo: w{i}\n=> ", "target": f"w{i}"} for i in range(24)]
    (root / "suites" / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ws, _ = Workspace.init(root, spec_text=SPEC)
    base1 = loop.register_model(ws, "base", tiny_model_dir, actor="bob").id
    assert loop.release(ws, base1, actor="bob", propagate=False).released
    for seed, line in enumerate(("support", "sales")):
        v = loop.register_model(ws, line, _adapter(tiny_model_dir, tmp_path / line, seed), base=base1, actor="bob")
        assert loop.release(ws, v.id, actor="bob", propagate=False).released

    loaded: list[Path] = []
    real = shared_path.SharedBase

    class Counted(real):  # type: ignore[misc,valid-type]  # the real class, counting the bases it loads
        def __init__(self, base: Path, **kw: Any) -> None:
            loaded.append(Path(base))
            super().__init__(base, **kw)

    monkeypatch.setattr(shared_path, "SharedBase", Counted)
    base2 = loop.register_model(ws, "base", _nudged(tiny_model_dir, tmp_path / "base2"), actor="bob").id
    out = loop.release(ws, base2, actor="bob")
    waves = {p.line: p for p in out.propagation}
    assert {waves["support"].strategy, waves["sales"].strategy} == {"reattach"}
    assert waves["support"].released and waves["sales"].released
    assert len(loaded) == 1  # both children's candidates evaluated on one loaded base

    # what the shared base measured is what a merged copy of each child measures
    from loopgate.evaluate.runner import evaluate_model
    from loopgate.loop.evaluation import load_suites
    from loopgate.loop.versions import version_ref

    suite = load_suites(ws, ["chat"])
    for line in ("support", "sales"):
        new = ws.store.channel(line, "production")
        assert new != f"{line}@1"
        stored = next(e for e in ws.store.evaluations(new) if e.suite == "chat")
        merged = evaluate_model(version_ref(ws, new), suite, version=new, cache_dir=None)[0]
        assert [x.output for x in stored.examples] == [x.output for x in merged.examples]
        assert stored.score == merged.score
