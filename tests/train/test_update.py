"""run_update: bit-for-bit determinism, provenance, data validation, LoRA options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from seed import SEED
from train_tasks import SFT_B, sft_rows, write_jsonl

from loopgate.errors import DataError, SpecError
from loopgate.hashing import sha256_file
from loopgate.models import load_model
from loopgate.spec import KLSettings, LoraSettings, Recipe, ReplaySettings, TinyModelSettings
from loopgate.train import load_rows, run_update

TINY_STEPS = {"steps": 6, "batch_size": 8}


def test_same_inputs_give_bit_identical_weights(v1: Path, data_dir: dict[str, Path], tmp_path: Path) -> None:
    recipe = SFT_B.model_copy(update={**TINY_STEPS, "replay": ReplaySettings(share=0.25), "kl": KLSettings()})
    runs = [run_update(v1, recipe, [data_dir["B"]], tmp_path / f"run{i}", replay=[data_dir["A"]]) for i in (0, 1)]
    assert sha256_file(runs[0].out_dir / "model.safetensors") == sha256_file(runs[1].out_dir / "model.safetensors")
    assert runs[0].provenance["replay_rows_per_batch"] == 2  # a quarter of 8 (a loop variable once shadowed it: 7)
    other = run_update(v1, recipe.model_copy(update={"seed": SEED + 1}), [data_dir["B"]], tmp_path / "seed1",
                       replay=[data_dir["A"]])
    assert sha256_file(other.out_dir / "model.safetensors") != sha256_file(runs[0].out_dir / "model.safetensors")


def test_lora_adapter_is_deterministic_and_its_own_artifact(v1: Path, data_dir: dict[str, Path],
                                                            tmp_path: Path) -> None:
    recipe = Recipe(method="lora", lr=1e-2, max_length=32, lora=LoraSettings(r=4), **TINY_STEPS)  # type: ignore[arg-type]
    a = run_update(v1, recipe, [data_dir["B"]], tmp_path / "a", progress=True)
    b = run_update(v1, recipe, [data_dir["B"]], tmp_path / "b")
    assert a.kind == "adapter" and (a.out_dir / "adapter_config.json").exists()
    ta, tb = load_file(a.out_dir / "adapter_model.safetensors"), load_file(b.out_dir / "adapter_model.safetensors")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    # continuing the adapter starts from it (and still gives an adapter)
    c = run_update(v1, recipe, [data_dir["B"]], tmp_path / "c", adapter_dir=a.out_dir)
    tc = load_file(c.out_dir / "adapter_model.safetensors")
    assert tc.keys() == ta.keys() and not all(torch.equal(ta[k], tc[k]) for k in ta)
    merged = run_update(v1, recipe.model_copy(update={"lora": LoraSettings(r=4, merge=True)}), [data_dir["B"]],
                        tmp_path / "m")
    assert merged.kind == "full" and (merged.out_dir / "model.safetensors").exists()


def test_lora_trainable_tokens_train_only_those_rows(v1: Path, data_dir: dict[str, Path], tmp_path: Path) -> None:
    recipe = Recipe(method="lora", lr=1e-2, max_length=32, lora=LoraSettings(r=4, trainable_tokens=["A", "B"],
                                                                            merge=True), **TINY_STEPS)  # type: ignore[arg-type]
    upper = write_jsonl(tmp_path / "upper.jsonl", [{"prompt": "U ab=", "completion": "AB"}] * 16)
    out = run_update(v1, recipe, [upper], tmp_path / "tt").out_dir
    before, after = load_model(v1), load_model(out)
    tok = before.tokenizer
    ids = [tok.convert_tokens_to_ids(c) for c in "AB"]
    head_b, head_a = before.model.lm_head.weight, after.model.lm_head.weight
    changed = [i for i in range(head_b.shape[0]) if not torch.equal(head_b[i], head_a[i])]
    assert changed == sorted(ids), "only the listed tokens' output rows are trained"


def test_provenance_records_how_the_version_was_made(v1: Path, data_dir: dict[str, Path], tmp_path: Path) -> None:
    recipe = SFT_B.model_copy(update=TINY_STEPS)
    r = run_update(v1, recipe, [data_dir["B"]], tmp_path / "p")
    p = r.provenance
    assert p["data_sha256"] == [sha256_file(data_dir["B"])]
    assert p["parent_weights_sha256"] == sha256_file(v1 / "model.safetensors")
    assert p["recipe"] == recipe.model_dump(mode="json") and p["seed"] == recipe.seed
    assert set(p["libraries"]) >= {"torch", "transformers", "peft", "trl"}
    assert p["code_version"] and p["wall_s"] > 0 and p["threads"] == 1
    assert p["tokens_seen"] > 6 * 8 * 4  # at least prompt + answer + eos per row
    assert p["train_flops"] == 6 * p["params"] * p["tokens_seen"]
    assert r.metrics["final_loss"] == p["final_loss"] and r.metrics["tokens_per_s"] > 0


def test_pretrain_from_nothing_builds_a_tiny_foundation(tmp_path: Path) -> None:
    text = write_jsonl(tmp_path / "t.jsonl", [{"text": "hello world"}] * 8)
    r = run_update(None, Recipe(method="pretrain", steps=2, batch_size=4, max_length=16), [text], tmp_path / "f")
    assert r.kind == "full" and load_model(r.out_dir).model.config.vocab_size == 100


def test_data_errors_name_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: missing field 'completion'"):
        load_rows(bad, "sft")
    bad.write_text('{"prompt": "a", "completion": 3}\n')
    with pytest.raises(DataError, match=r":1: field 'completion' must be a string"):
        load_rows(bad, "sft")
    bad.write_text('{"prompt": "a", "chosen": "b"}\n')
    with pytest.raises(DataError, match=r":1: missing field 'rejected'"):
        load_rows(bad, "dpo")
    bad.write_text("not json\n")
    with pytest.raises(DataError, match=r":1: not valid JSON"):
        load_rows(bad, "text")
    bad.write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        load_rows(bad, "sft")
    with pytest.raises(DataError, match="no such data file"):
        load_rows(tmp_path / "missing.jsonl", "sft")


def test_recipe_misuse_is_refused(v1: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", sft_rows("B", ["abc"]))
    with pytest.raises(SpecError, match="needs a parent"):
        run_update(None, Recipe(method="lora", steps=1), [data], tmp_path / "x")
    with pytest.raises(SpecError, match="takes no replay"):
        run_update(v1, Recipe(method="dpo"), [data], tmp_path / "x", replay=[data])
    with pytest.raises(SpecError, match="not a single token"):
        run_update(v1, Recipe(method="lora", steps=1, lora=LoraSettings(trainable_tokens=["ab"])), [data],
                   tmp_path / "x")


def test_sft_without_parent_trains_a_fresh_tiny_model_of_the_recipe_shape(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", sft_rows("A", ["abc", "defg"]))
    recipe = Recipe(method="sft", steps=2, batch_size=2, max_length=16,
                    model=TinyModelSettings(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                            max_positions=32))
    res = run_update(None, recipe, [data], tmp_path / "m")
    assert res.kind == "full" and res.provenance["params"] < 50_000
    assert json.loads((tmp_path / "m" / "config.json").read_text())["hidden_size"] == 32
