"""``loopgate register`` opens what it stores: an adapter must fit its base, a shard index must stay inside its
folder, config numbers must be finite, weights must be floating point of the config's shapes, and one forward
pass over a few tokens must give finite logits. A refused folder leaves no version and no blob behind."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from loopgate.errors import LoopgateError, ModelFileError
from loopgate.loop.versions import register_model
from loopgate.models import check_model_dir, load_model, load_tokenizer


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(load_model(tiny_model_dir).model,
                                LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("register") / "adapter"
    peft_model.save_pretrained(str(out))
    return out


def blobs(ws: Any) -> list[Path]:
    return sorted(p for p in ws.store.artifacts.root.rglob("*") if p.is_file())


def refused(ws: Any, line: str, folder: Path, match: str, **kwargs: Any) -> ModelFileError:
    """Registering ``folder`` fails with a ModelFileError matching ``match`` and writes nothing."""
    before = blobs(ws)
    with pytest.raises(ModelFileError, match=match) as err:
        register_model(ws, line, folder, **kwargs)
    assert ws.store.versions(line) == []
    assert blobs(ws) == before
    return err.value


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_good_model_and_adapter_register(workspace: Any, tiny_model_dir: Path, adapter_dir: Path) -> None:
    register_model(workspace, "base", tiny_model_dir)
    v = register_model(workspace, "support", adapter_dir, base="base@1")
    assert v.kind == "adapter"


@pytest.mark.parametrize("case", ["empty-config", "rank-mismatch", "unknown-target", "untargeted-tensor",
                                  "other-peft-type"])
def test_an_adapter_that_does_not_fit_its_base_is_refused(case: str, workspace: Any, tiny_model_dir: Path,
                                                          adapter_dir: Path, tmp_path: Path) -> None:
    register_model(workspace, "base", tiny_model_dir)
    bad = shutil.copytree(adapter_dir, tmp_path / case)
    config = bad / "adapter_config.json"
    if case == "empty-config":
        config.write_text("{}")
        match = "peft_type is None; Loopgate applies LoRA adapters"
    elif case == "rank-mismatch":
        edit_json(config, lambda c: c.update(r=4))
        match = (r"lora_A\.weight has shape \[2, 32\]; r=4 and the base's model\.layers\.0\.self_attn\.q_proj "
                 r"imply \[4, 32\]")
    elif case == "unknown-target":
        edit_json(config, lambda c: c.update(target_modules=["q_proj", "qkv_proj"]))
        match = r"target_modules \['qkv_proj'\] are not modules of the base model .*named .*q_proj"
    elif case == "untargeted-tensor":
        edit_json(config, lambda c: c.update(target_modules=["q_proj"]))
        match = r"v_proj\.lora_A\.weight: model\.layers\.0\.self_attn\.v_proj is not in target_modules"
    else:
        edit_json(config, lambda c: c.update(peft_type="IA3"))
        match = "peft_type is 'IA3'"
    refused(workspace, "support", bad, match, base="base@1")


def test_an_adapter_on_an_adapter_version_is_refused(workspace: Any, tiny_model_dir: Path, adapter_dir: Path) -> None:
    register_model(workspace, "base", tiny_model_dir)
    register_model(workspace, "support", adapter_dir, base="base@1")
    with pytest.raises(LoopgateError, match="support@1 is itself an adapter version"):
        register_model(workspace, "billing", adapter_dir, base="support@1")
    assert workspace.store.versions("billing") == []


def test_a_shard_index_pointing_outside_the_folder_is_refused(workspace: Any, tiny_model_dir: Path,
                                                               tmp_path: Path) -> None:
    torch.manual_seed(0)
    out = tmp_path / "sharded"
    LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64)).save_pretrained(str(out), max_shard_size="20KB")
    load_tokenizer(tiny_model_dir).save_pretrained(str(out))
    index = out / "model.safetensors.index.json"
    shard = sorted(out.glob("model-*.safetensors"))[0]
    outside = tmp_path / "outside.safetensors"
    shutil.copy(shard, outside)  # a real file there: the check must not depend on it being missing
    edit_json(index, lambda d: d["weight_map"].update(
        {k: "../outside.safetensors" for k, v in d["weight_map"].items() if v == shard.name}))
    refused(workspace, "base", out, r"weight_map names '\.\./outside\.safetensors', not a file in the model folder")
    edit_json(index, lambda d: d["weight_map"].update(
        {k: str(outside) for k, v in d["weight_map"].items() if v == "../outside.safetensors"}))
    refused(workspace, "base", out, "weight_map names '/.*outside.safetensors', not a file in the model folder")


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_config_number_is_refused(value: float, workspace: Any, tiny_model_dir: Path,
                                               tmp_path: Path) -> None:
    out = shutil.copytree(tiny_model_dir, tmp_path / "cfg")
    edit_json(out / "config.json", lambda c: c.update(rms_norm_eps=value))
    assert "NaN" in (out / "config.json").read_text() or "Infinity" in (out / "config.json").read_text()
    refused(workspace, "base", out, r"config\.json: rms_norm_eps is (nan|inf); a model's config numbers must be finite")


def test_a_tensor_relabelled_to_an_integer_dtype_is_refused(workspace: Any, tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    out = shutil.copytree(tiny_model_dir, tmp_path / "dtype")
    weights = out / "model.safetensors"
    data = weights.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["model.embed_tokens.weight"]["dtype"] = "I32"  # same item size: the file stays a valid safetensors
    raw = json.dumps(header, separators=(",", ":")).encode().ljust(n)
    assert len(raw) == n
    weights.write_bytes(data[:8] + raw + data[8 + n:])
    refused(workspace, "base", out, r"weights must be floating point .* model\.embed_tokens\.weight is I32")


def test_weights_of_the_wrong_shape_are_refused(workspace: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = shutil.copytree(tiny_model_dir, tmp_path / "vocab")
    tensors = load_file(out / "model.safetensors")
    tensors["model.embed_tokens.weight"] = tensors["model.embed_tokens.weight"][:50].clone()
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    refused(workspace, "base", out,
            r"model\.embed_tokens\.weight has shape \[50, 32\] .*config\.json implies \[100, 32\]")


def test_nan_weights_are_caught_by_the_forward_pass(workspace: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = shutil.copytree(tiny_model_dir, tmp_path / "nan")
    tensors = load_file(out / "model.safetensors")
    tensors["model.layers.0.mlp.down_proj.weight"][0, 0] = math.nan
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    check_model_dir(out)  # every file is intact and of the right shape: only running it shows the NaN
    refused(workspace, "base", out, "a forward pass over 8 tokens gives non-finite logits")


def test_a_tokenizer_larger_than_the_embedding_is_refused(workspace: Any, tiny_model_dir: Path,
                                                          tmp_path: Path) -> None:
    out = shutil.copytree(tiny_model_dir, tmp_path / "tok")
    tok = load_tokenizer(out)
    tok.add_tokens(["<extra-1>", "<extra-2>"])
    tok.save_pretrained(str(out))
    refused(workspace, "base", out, "its tokenizer has 102 tokens but the model's embedding only 100 rows")


def test_the_cli_refuses_with_one_paragraph_and_exit_2(workspace: Any, tiny_model_dir: Path, tmp_path: Path,
                                                       cli: Callable[..., Any]) -> None:
    out = shutil.copytree(tiny_model_dir, tmp_path / "cli")
    edit_json(out / "config.json", lambda c: c.update(rope_theta=math.nan))
    res = cli("register", "base", "--model", out, workspace=workspace.root)
    assert res.code == 2, res.err
    assert "Traceback" not in res.err and "rope_theta is nan" in res.err
    assert cli("status", "--json", workspace=workspace.root).code == 0
    assert workspace.store.versions("base") == []


def test_the_register_checks_are_cheap(workspace: Any, tiny_model_dir: Path, adapter_dir: Path) -> None:
    """The checks (headers, skeleton, a load and a forward over 8 tokens) of a tiny model take well under a
    second; measured ~0.1 s for the model and ~0.1 s for the adapter on the 2-core CI machine."""
    from loopgate.models.io import ModelRef, check_forward

    t0 = time.perf_counter()
    check_model_dir(tiny_model_dir)
    check_forward(tiny_model_dir)
    check_model_dir(adapter_dir, base=tiny_model_dir)
    check_forward(ModelRef(tiny_model_dir, adapter_dir))
    assert time.perf_counter() - t0 < 5.0
