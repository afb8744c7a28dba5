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


GIB = 2**30


@pytest.mark.parametrize(("device", "weights", "free", "wanted", "expected"), [
    ("cuda", 10 * GIB, 70 * GIB, "", {"": "cuda"}),      # fits one GPU: straight onto it
    ("cuda", 60 * GIB, 70 * GIB, "", "auto"),            # more than 80 % of its free memory: spread
    ("cuda", 60 * GIB, 70 * GIB, "single", {"": "cuda"}),
    ("cuda", 1 * GIB, 70 * GIB, "AUTO", "auto"),
    ("cpu", 60 * GIB, None, "", None),                   # transformers' own CPU load
    ("cpu", 1 * GIB, None, "auto", "auto"),
], ids=["fits", "too-big", "single", "forced", "cpu", "cpu-forced"])
def test_where_the_weights_go(device: str, weights: int, free: int | None, wanted: str, expected: Any) -> None:
    from loopgate.models.io import device_map_for

    got = device_map_for(torch.device(device), weights, free, wanted)
    assert got == ({"": torch.device(device)} if isinstance(expected, dict) else expected)


def test_a_model_placed_by_accelerate_evaluates_and_trains_like_a_plain_one(
        tmp_path: Path, tiny_model_dir: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LOOPGATE_DEVICE_MAP=auto`` loads with ``device_map="auto"`` (accelerate's memory inference), the path a
    model bigger than one GPU takes. On a machine without GPUs it places every layer on the CPU, so transformers
    adds no dispatch hooks (those need two devices) and the answers must be the plain load's."""
    monkeypatch.setenv("LOOPGATE_DEVICE", "cpu")
    monkeypatch.setenv("LOOPGATE_DTYPE", "float32")
    suite_file = tmp_path / "s.jsonl"
    suite_file.write_text("".join(json.dumps({"prompt": r["prompt"], "target": r["completion"]}) + "\n"
                                  for r in ROWS))
    suite = load_suite("rev", SuiteSpec(path=str(suite_file), max_new_tokens=6, stop=[]))
    [plain] = evaluate_model(tiny_model_dir, [suite], version="v", cache_dir=None)
    monkeypatch.setenv("LOOPGATE_DEVICE_MAP", "auto")
    [spread] = evaluate_model(tiny_model_dir, [suite], version="v", cache_dir=None)
    assert [e.output for e in spread.examples] == [e.output for e in plain.examples]
    assert spread.device == "cpu" and spread.n == len(ROWS)
    lora = run_update(tiny_model_dir, Recipe(method="lora", steps=2, batch_size=4, lora=LoraSettings(r=2)),
                      [data], tmp_path / "lora")
    assert lora.kind == "adapter" and lora.provenance["tokens_seen"] > 0
    monkeypatch.setenv("LOOPGATE_DEVICE_MAP", "everywhere")
    with pytest.raises(DeviceError, match="LOOPGATE_DEVICE_MAP='everywhere'"):
        load_model(tiny_model_dir)


def test_a_batch_that_runs_out_of_device_memory_is_split_and_every_row_still_answered(
        tiny_model_dir: Path) -> None:
    """The memory estimate can be too generous on a real GPU: the engine then retries the batch in halves. The
    out-of-memory error is raised here by the model itself for batches over 3 rows (no GPU needed); the answers
    must be the ones a single unsplit batch gives."""
    from loopgate.evaluate.engine import EngineConfig, generate

    loaded = load_model(tiny_model_dir, device="cpu", dtype="float32")
    model, tok = loaded.model, loaded.tokenizer
    prompts = [r["prompt"] for r in ROWS] + ["x>", "longer prompt>"]
    whole = generate(model, tok, prompts, max_new_tokens=5, stop=[], config=EngineConfig(batch_size=len(prompts)))
    real, sizes = model.generate, []

    def tight(*args: Any, **kwargs: Any) -> Any:
        sizes.append(int(kwargs["input_ids"].shape[0]))
        if sizes[-1] > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (raised by the test)")
        return real(*args, **kwargs)

    model.generate = tight
    split = generate(model, tok, prompts, max_new_tokens=5, stop=[], config=EngineConfig(batch_size=len(prompts)))
    served = [n for n in sizes if n <= 3]  # the batches that ran: halves of halves, every row once
    assert sizes[:2] == [10, 5] and sum(served) == len(prompts) and len(served) == 4, sizes
    assert [g.text for g in split] == [g.text for g in whole] and len(split) == len(prompts)
    model.generate = lambda *a, **k: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("one row does not fit"))
    with pytest.raises(torch.cuda.OutOfMemoryError, match="one row does not fit"):
        generate(model, tok, prompts[:1], max_new_tokens=5, stop=[], config=EngineConfig(batch_size=1))


def test_grpo_trains_on_the_chosen_device_and_precision(tmp_path: Path, tiny_model_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """GRPO was pinned to the CPU in float32 whatever the machine had; it now takes the same placement as SFT:
    float32 master weights under bf16 autocast (bf16 runs on the CPU too, so the path is tested here)."""
    from loopgate.spec import GRPOSettings

    monkeypatch.setenv("LOOPGATE_DEVICE", "cpu")
    monkeypatch.setenv("LOOPGATE_DTYPE", "bfloat16")
    rows = tmp_path / "rl.jsonl"
    rows.write_text("".join(json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n"
                            for r in ROWS))
    recipe = Recipe(method="grpo", steps=1, batch_size=4, max_length=32,
                    grpo=GRPOSettings(num_generations=2, max_new_tokens=3))
    out = run_update(tiny_model_dir, recipe, [rows], tmp_path / "grpo")
    prov = out.provenance
    assert (prov["device"], prov["dtype"]) == ("cpu", "bfloat16"), prov
    assert prov["precision"].startswith("float32 master weights") and prov["tokens_seen"] > 0
    with safe_open(str(out.out_dir / "model.safetensors"), framework="pt") as f:  # saved as computed, as SFT
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.bfloat16


@pytest.mark.parametrize(("option", "value"), [("--device", "gpu0"), ("--device", "cuda:x"), ("--dtype", "int8"),
                                               ("--dtype", "float64")])
def test_a_misspelt_device_or_dtype_is_refused_before_the_command_runs(workspace: Any, cli: Any, option: str,
                                                                        value: str) -> None:
    """Checked by form in the CLI (no torch import), so a command that loads no model, or hits the evaluation
    cache, cannot exit 0 with a device name torch would refuse."""
    res = cli(option, value, "status", workspace=workspace.root)
    assert res.code == 2 and value in res.err and "Traceback" not in res.err
