"""LoRA targets the model's own projections: a GPT-2 gets ``c_attn``, the tiny Llama keeps its seven
projections, and a recipe naming modules the model lacks stops before training with the model's names."""

from __future__ import annotations

from pathlib import Path

import pytest
from peft import get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

from loopgate.errors import LoopgateError, SpecError
from loopgate.models import TinyConfig, build_tiny_model, char_tokenizer, save_model
from loopgate.spec import LoraSettings, Recipe
from loopgate.train import lora as lora_module
from loopgate.train.lora import LLAMA_TARGETS, linear_module_names, lora, lora_config

ROWS = [{"prompt": f"{w}=", "completion": w[::-1]} for w in ("abc", "hello", "xyz", "lora")]


def tiny_gpt2() -> GPT2LMHeadModel:
    tok = char_tokenizer()
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id))


def test_a_gpt2_gets_its_own_attention_projection_by_default() -> None:
    model = tiny_gpt2()
    config = lora_config(LoraSettings(r=2), model, char_tokenizer())
    assert config.target_modules == {"c_attn"}
    peft_model = get_peft_model(model, config)  # was NoMatchingPeftModuleError, a 75-line traceback
    assert peft_model.get_nb_trainable_parameters()[0] > 0


def test_the_tiny_llama_keeps_its_seven_projections() -> None:
    model, tok = build_tiny_model(TinyConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32))
    assert lora_config(LoraSettings(), model, tok).target_modules == set(LLAMA_TARGETS)
    assert lora_config(LoraSettings(target_modules=["q_proj"]), model, tok).target_modules == {"q_proj"}


def test_llama_names_on_a_gpt2_name_the_missing_modules_and_the_models_own() -> None:
    with pytest.raises(SpecError) as exc:
        lora_config(LoraSettings(target_modules=["q_proj", "c_attn", "v_proj"]), tiny_gpt2(), char_tokenizer())
    msg = str(exc.value)
    assert "lora.target_modules" in msg and "(gpt2)" in msg
    assert "'q_proj', 'v_proj'" in msg and "'c_attn'," not in msg
    assert "c_attn, c_fc, c_proj, lm_head" in msg
    assert linear_module_names(tiny_gpt2()) == ["c_attn", "c_fc", "c_proj", "lm_head"]


def test_a_gpt2_trains_a_lora_adapter_end_to_end(tmp_path: Path) -> None:
    parent = save_model(tiny_gpt2(), char_tokenizer(), tmp_path / "gpt2")
    trained = lora(parent, Recipe(method="lora", steps=2, batch_size=2, max_length=16, lora=LoraSettings(r=2)),
                   ROWS, tmp_path / "out")
    assert trained.kind == "adapter"
    assert '"c_attn"' in (tmp_path / "out" / "adapter_config.json").read_text(encoding="utf-8")


def test_missing_modules_stop_before_any_training(tmp_path: Path, tiny_model_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(lora_module, "fit", no_training)
    recipe = Recipe(method="lora", steps=1, lora=LoraSettings(target_modules=["c_attn"]))
    with pytest.raises(LoopgateError, match=r"no module named 'c_attn'; its linear modules are: down_proj, "):
        lora(tiny_model_dir, recipe, ROWS, tmp_path / "out")
