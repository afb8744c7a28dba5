"""The tiny model family: a normal HF directory that transformers loads offline, registered, checked out
and loaded back generating the same tokens; pickle-only folders are refused."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from loopgate.errors import UnsafeModelError
from loopgate.models import TinyConfig, build_tiny_model, char_tokenizer, load_model, model_files

PROMPT = "reverse: abc\n=> "


def greedy(model: Any, tok: Any, prompt: str = PROMPT, n: int = 12) -> list[int]:
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def test_tokenizer_round_trips_text(tiny_model_dir: Path) -> None:
    text = "Hello, World!\n  two  spaces\tand ~symbols~ 123"
    for tok in (char_tokenizer(), AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)):
        ids = tok(text.replace("\t", " ")).input_ids
        assert len(ids) == len(text)  # one token per character, no BOS/EOS added
        assert tok.decode(ids) == text.replace("\t", " ")
    assert char_tokenizer()("é").input_ids == [char_tokenizer().unk_token_id]


def test_saved_dir_is_safetensors_only(tiny_model_dir: Path) -> None:
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    assert {p.name for p in model_files(tiny_model_dir)} >= {"model.safetensors", "config.json", "tokenizer.json"}


def test_build_is_deterministic_from_seed() -> None:
    cfg = TinyConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, seed=3)
    a, _ = build_tiny_model(cfg)
    b, _ = build_tiny_model(cfg)
    c, _ = build_tiny_model(TinyConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, seed=4))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    assert TinyConfig().hidden_size == 128  # the demo's default shape stays ≈1 M parameters
    assert 0.5e6 < sum(p.numel() for p in build_tiny_model()[0].parameters()) < 2e6


def test_register_checkout_load_generate_same_tokens(
        tiny_model_dir: Path, workspace: Any, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    expected = greedy(original, tok)

    res = cli("register", "base", "--model", tiny_model_dir, "--note", "untrained", "--json", workspace=workspace.root)
    assert res.code == 0, res.err
    v = res.json()
    assert v["id"] == "base@1" and v["kind"] == "full" and v["provenance"] == {"note": "untrained"}
    assert "model.safetensors" in v["files"]

    out = workspace.store.checkout("base@1")
    assert out != tiny_model_dir
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True, use_safetensors=True).eval()
    tok2 = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert greedy(model, tok2) == expected
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    loaded = load_model(out)  # Loopgate's own loader: same weights, eval mode, left padding
    assert greedy(loaded.model, loaded.tokenizer) == expected
    assert not loaded.model.training and loaded.tokenizer.padding_side == "left"


def test_pickle_only_folder_is_refused(tmp_path: Path, tiny_model_dir: Path, workspace: Any,
                                       cli: Callable[..., Any]) -> None:
    bad = tmp_path / "pickled"
    bad.mkdir()
    shutil.copy(tiny_model_dir / "config.json", bad / "config.json")
    (bad / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(UnsafeModelError, match="pytorch_model.bin.*never unpickles"):
        model_files(bad)
    with pytest.raises(UnsafeModelError):
        load_model(bad)
    res = cli("register", "base", "--model", bad, workspace=workspace.root)
    assert res.code == 2
    assert "never unpickles" in res.err and "Traceback" not in res.err
    assert workspace.store.versions("base") == []


def test_folder_without_config_is_refused(tmp_path: Path, tiny_model_dir: Path, workspace: Any,
                                          cli: Callable[..., Any]) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_model_dir / "model.safetensors", bare / "model.safetensors")
    res = cli("register", "base", "--model", bare, workspace=workspace.root)
    assert res.code == 2 and "no config.json" in res.err
