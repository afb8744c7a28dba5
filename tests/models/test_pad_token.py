"""A derived version keeps its parent's tokenizer: a pad token borrowed from eos for batching is not written into
it (a parent without one gives a child without one), and a parent's own pad token is kept (#24 item 10)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from loopgate.models import TinyConfig, build_tiny_model, save_model
from loopgate.models.io import load_tokenizer


def test_borrowed_pad_is_not_written_and_a_real_one_is_kept(tmp_path: Path) -> None:
    model, tok = build_tiny_model(TinyConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, seed=0))
    with_pad = save_model(model, tok, tmp_path / "with-pad")
    tok.pad_token = None
    no_pad = save_model(model, tok, tmp_path / "no-pad")
    assert AutoTokenizer.from_pretrained(str(no_pad)).pad_token is None

    loaded = load_tokenizer(no_pad)
    assert loaded.pad_token == loaded.eos_token  # batching still has a pad token in memory
    child = save_model(model, loaded, tmp_path / "child")
    assert AutoTokenizer.from_pretrained(str(child)).pad_token is None  # not pad = eos, silently
    assert loaded.pad_token == loaded.eos_token  # and the caller's tokenizer still pads

    parent_pad = AutoTokenizer.from_pretrained(str(with_pad)).pad_token
    assert parent_pad is not None and parent_pad != loaded.eos_token
    kept = save_model(model, load_tokenizer(with_pad), tmp_path / "child-of-padded")
    assert AutoTokenizer.from_pretrained(str(kept)).pad_token == parent_pad


def test_an_adapter_version_keeps_its_parents_tokenizer(tmp_path: Path) -> None:
    """A LoRA version's folder holds a tokenizer too: trained for two real steps on a parent without a pad token,
    the adapter's tokenizer has none either."""
    from loopgate.spec import Recipe
    from loopgate.train.lora import lora

    model, tok = build_tiny_model(TinyConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, seed=0))
    tok.pad_token = None
    parent = save_model(model, tok, tmp_path / "parent")
    recipe = Recipe.model_validate({"method": "lora", "steps": 2, "batch_size": 2, "lr": 1e-3})
    rows = [{"prompt": f"q{i} ", "completion": f"a{i}"} for i in range(4)]
    trained = lora(parent, recipe, rows, tmp_path / "adapter")
    assert trained.kind == "adapter"
    assert AutoTokenizer.from_pretrained(str(tmp_path / "adapter")).pad_token is None
