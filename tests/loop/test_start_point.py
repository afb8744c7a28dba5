"""One start point for every trainer in ``loop/``: ``loopgate update`` and ``loopgate tune`` start an update of a
line whose latest version is a LoRA adapter the same way — a full method trains the base + adapter merged in
memory, an adapter method keeps training the adapter on its base. (``tune`` used to refuse the adapter version:
its own copy of the start logic asked an adapter version for a folder of full weights.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from decided import release
from seed import SEED

from loopgate.demo.world import World, write_jsonl
from loopgate.loop.start import start_point, start_version
from loopgate.loop.tune import tune
from loopgate.loop.updating import train_candidate
from loopgate.loop.versions import register_model
from loopgate.models import load_model


@pytest.fixture
def adapter_start(workspace: Any, tiny_model_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """base@1 in production (the tiny model) and support@1, a registered LoRA adapter on it; the update data and
    support's own suite."""
    from peft import LoraConfig, get_peft_model

    register_model(workspace, "base", tiny_model_dir)
    release(workspace.store, [("base", "production", "base@1")])
    torch.manual_seed(0)
    peft_model = get_peft_model(load_model(tiny_model_dir).model,
                                LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    register_model(workspace, "support", tmp_path / "adapter", base="base@1")
    w = World(SEED)
    write_jsonl(workspace.root / "suites" / "reversal.jsonl", w.generation_suite("reverse", n=8))
    data = write_jsonl(tmp_path / "data.jsonl", w.skill_rows("reverse", w.words(64)))
    return {"ws": workspace, "data": data}


def test_the_start_of_an_adapter_line_depends_on_what_the_method_trains(adapter_start: dict[str, Any]) -> None:
    ws = adapter_start["ws"]
    assert start_version(ws, "support") == "support@1"
    full = start_point(ws, "support", "sft")
    assert full.adapter_dir is not None and full.base_version == "support@1"  # merged in memory
    adapter = start_point(ws, "support", "lora")
    assert adapter.adapter_dir is not None and adapter.base_version == "base@1"  # continued on its base
    assert full.parent_dir == adapter.parent_dir  # both load base@1's weights


def test_tune_starts_from_an_adapter_version_as_update_does(adapter_start: dict[str, Any]) -> None:
    ws, data = adapter_start["ws"], adapter_start["data"]
    v = train_candidate(ws, "support", [data], actor="ci")
    assert v.provenance["built_from"] == "support@1" and v.kind == "full"
    out = tune(ws, "support", [data], trials=1, seed=SEED, actor="ci")
    # the trial trained and was judged by the gates (a failed trial leaves no result)
    assert [t.number for t in out.trials] == [0]
    assert out.trials[0].state in ("feasible", "infeasible", "pruned")
    assert out.trials[0].train_flops and out.trials[0].train_flops > 0


def test_tune_judges_an_adapter_trial_on_its_base_never_merged(adapter_start: dict[str, Any],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A lora trial's adapter is evaluated on its base through the gateway's shared-base path (#22), as a
    propagation wave's adapters are; the trial is judged as before."""
    from loopgate.evaluate import adapters as shared_path
    from loopgate.loop.workspace import Workspace

    root, data = adapter_start["ws"].root, adapter_start["data"]
    spec = root / "loopgate.yaml"
    spec.write_text(spec.read_text().replace("recipes:\n", "recipes:\n  adapter-lora:\n    method: lora\n"
                                             "    steps: 5\n", 1))
    ws = Workspace.open(root)
    loaded: list[Path] = []
    real = shared_path.SharedBase

    class Counted(real):  # type: ignore[misc,valid-type]  # the real class, counting the bases it loads
        def __init__(self, base: Path, **kw: Any) -> None:
            loaded.append(Path(base))
            super().__init__(base, **kw)

    monkeypatch.setattr(shared_path, "SharedBase", Counted)
    out = tune(ws, "support", [data], trials=1, recipe_name="adapter-lora", seed=SEED, actor="ci")
    assert [t.number for t in out.trials] == [0] and out.trials[0].state in ("feasible", "infeasible", "pruned")
    assert len(loaded) == 1 and loaded[0].name == "base@1"
