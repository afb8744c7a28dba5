"""Device and dtype: chosen from ``--device``/``--dtype`` or the environment (auto: cuda → mps → cpu; bf16 on a GPU
that supports it, float32 on the CPU), weights loaded straight in that dtype, recorded with every evaluation and
training run. bf16 runs on the CPU too, so every path is tested here without a GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from loopgate.errors import DeviceError
from loopgate.evaluate.runner import evaluate_model
from loopgate.evaluate.suites import load_suite
from loopgate.models import load_model, resolve_device, resolve_dtype
from loopgate.spec import LoraSettings, Recipe, SuiteSpec
from loopgate.train.update import run_update

ROWS = [{"prompt": f"{w}>", "completion": w[::-1]} for w in ("abc", "dog", "sun", "map", "cat", "pen", "log", "tea")]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_auto_picks_the_best_device_here_and_float32_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPGATE_DEVICE", raising=False)
    monkeypatch.delenv("LOOPGATE_DTYPE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype("float16") == torch.float16
    monkeypatch.setenv("LOOPGATE_DTYPE", "bfloat16")
    assert resolve_dtype() == torch.bfloat16
    with pytest.raises(DeviceError, match="dtype 'int3' is not one"):
        resolve_dtype("int3")
    with pytest.raises(DeviceError, match="device 'tpu9' is not one torch knows"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="'cuda' is not available on this machine"):
            resolve_device("cuda")


def test_bf16_on_the_cpu_evaluates_and_trains_and_the_records_say_so(tmp_path: Path, tiny_model_dir: Path,
                                                                       data: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPGATE_DEVICE", "cpu")
    monkeypatch.setenv("LOOPGATE_DTYPE", "bfloat16")
    loaded = load_model(tiny_model_dir)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}  # loaded straight in bf16
    suite_file = tmp_path / "s.jsonl"
    suite_file.write_text("".join(json.dumps({"prompt": r["prompt"], "target": r["completion"]}) + "\n"
                                  for r in ROWS))
    [ev] = evaluate_model(tiny_model_dir, [load_suite("rev", SuiteSpec(path=str(suite_file)))], version="v",
                          cache_dir=None)
    assert (ev.device, ev.dtype) == ("cpu", "bfloat16") and ev.n == len(ROWS)

    full = run_update(tiny_model_dir, Recipe(method="sft", steps=2, batch_size=4), [data], tmp_path / "full")
    prov = full.provenance
    assert (prov["device"], prov["dtype"]) == ("cpu", "bfloat16")
    assert prov["precision"].startswith("float32 master weights") and prov["tokens_per_s"] > 0
    with safe_open(str(full.out_dir / "model.safetensors"), framework="pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.bfloat16

    lora = run_update(tiny_model_dir, Recipe(method="lora", steps=2, batch_size=4, grad_accum=2,
                                             gradient_checkpointing=True, lora=LoraSettings(r=2)),
                      [data], tmp_path / "lora")
    assert lora.kind == "adapter" and lora.provenance["precision"].startswith("bfloat16 frozen base")
    assert lora.provenance["dtype"] == "bfloat16" and lora.metrics["final_loss"] == lora.metrics["final_loss"]


def test_gradient_accumulation_takes_the_same_step_as_the_whole_batch(tmp_path: Path, tiny_model_dir: Path,
                                                                       data: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPGATE_DTYPE", "float32")

    def weights(**kw: Any) -> dict[str, torch.Tensor]:
        out = run_update(tiny_model_dir, Recipe(method="sft", steps=3, batch_size=8, lr=1e-2, **kw), [data],
                         tmp_path / f"out-{len(kw)}-{kw.get('grad_accum', 1)}").out_dir
        return dict(load_model(out).model.state_dict())

    whole, parts = weights(), weights(grad_accum=4, gradient_checkpointing=True)
    parent = dict(load_model(tiny_model_dir).model.state_dict())
    moved = max(float((whole[k] - parent[k]).abs().max()) for k in whole)
    apart = max(float((whole[k] - parts[k]).abs().max()) for k in whole)
    assert moved > 1e-3 and apart < moved / 100, (moved, apart)


def test_cli_device_option_reaches_the_loader(workspace: Any, tiny_model_dir: Path, cli: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda would work")
    monkeypatch.setenv("LOOPGATE_DEVICE", "auto")  # restored after the test: the option sets it in-process
    suite = workspace.root / "suites" / "reversal.jsonl"
    suite.parent.mkdir(exist_ok=True)
    suite.write_text('{"prompt": "ab>", "target": "ba"}\n')
    assert cli("register", "base", "--model", tiny_model_dir, workspace=workspace.root).code == 0
    assert cli("register", "support", "--model", tiny_model_dir, workspace=workspace.root).code == 0
    res = cli("--device", "cuda", "evaluate", "support@1", workspace=workspace.root)
    assert res.code == 2 and "'cuda' is not available on this machine" in res.err
