"""Model folders are checked from their safetensors headers and a meta-device skeleton of their config:
complete files, and exactly the tensors (names and shapes) the config implies — without rejecting the
layouts real checkpoints use (tied heads, shards, transformers' own load-time renames)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from loopgate.errors import ModelFileError
from loopgate.models import check_model_dir, load_model, load_tokenizer, safetensors_shapes


def save(model: PreTrainedModel, tiny_model_dir: Path, out: Path, **kwargs: object) -> Path:
    model.save_pretrained(str(out), **kwargs)
    load_tokenizer(tiny_model_dir).save_pretrained(str(out))
    return out


def llama(**kw: object) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, **kw))


@pytest.mark.parametrize("name", ["gpt2-tied", "llama-tied", "gpt-neox-renamed-head", "llama-sharded"])
def test_real_layouts_pass_and_load(name: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / name
    if name == "gpt2-tied":  # lm_head is stored once, as transformer.wte
        save(GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2, n_positions=64)),
             tiny_model_dir, out)
    elif name == "llama-tied":
        save(llama(tie_word_embeddings=True), tiny_model_dir, out)
    elif name == "gpt-neox-renamed-head":  # saved as embed_out, loaded as lm_head
        save(GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                              num_attention_heads=2, intermediate_size=64)), tiny_model_dir, out)
    else:
        save(llama(), tiny_model_dir, out, max_shard_size="20KB")
        assert (out / "model.safetensors.index.json").exists()
    names = {n for f in out.glob("*.safetensors") for n in safetensors_shapes(f)}
    assert not any(n.startswith("lm_head") for n in names) or name == "llama-sharded"
    check_model_dir(out)
    load_model(out)


def test_header_shapes_are_read_without_loading(tiny_model_dir: Path) -> None:
    shapes = safetensors_shapes(tiny_model_dir / "model.safetensors")
    assert shapes["model.layers.0.mlp.down_proj.weight"] == (32, 64)
    assert shapes["model.embed_tokens.weight"] == (100, 32)


@pytest.mark.parametrize("cut", ["trailing-bytes", "truncated", "empty"])
def test_incomplete_files_are_refused(cut: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    data = (tiny_model_dir / "model.safetensors").read_bytes()
    f.write_bytes({"trailing-bytes": data + b"\x00" * 4, "truncated": data[:-1], "empty": b""}[cut])
    with pytest.raises(ModelFileError, match=str(f)):
        safetensors_shapes(f)


def test_missing_shard_is_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = save(llama(), tiny_model_dir, tmp_path / "sharded", max_shard_size="20KB")
    shard = sorted(out.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ModelFileError, match=f"{shard}: missing"):
        check_model_dir(out)


def test_weights_saved_for_another_config_are_refused_and_not_loaded(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = shutil.copytree(tiny_model_dir, tmp_path / "layers")
    config = json.loads((out / "config.json").read_text())
    config["num_hidden_layers"] = 3  # the weights hold two layers: transformers would init the third at random
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=r"missing: model\.layers\.2\..* and \d+ more"):
        check_model_dir(out)
    with pytest.raises(ModelFileError, match="do not match config.json"):
        load_model(out)


def test_extra_tensor_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = shutil.copytree(tiny_model_dir, tmp_path / "extra")
    tensors = load_file(out / "model.safetensors")
    tensors["value_head.weight"] = torch.zeros(1, 32)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match=r"not in the model: value_head\.weight \(in model\.safetensors\)"):
        check_model_dir(out)


def test_broken_tokenizer_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = shutil.copytree(tiny_model_dir, tmp_path / "tok")
    (out / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nope"}}')
    with pytest.raises(ModelFileError, match="its tokenizer cannot be loaded"):
        check_model_dir(out)
