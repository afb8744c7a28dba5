"""The folders a version is loaded from (its checkout, an adapter's merged copy) are verified before every
use: a copy changed on disk is rebuilt from the stored blobs, never loaded as if it were the version."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from loopgate.loop.versions import adapter_parts, merged_dir, model_dir, register_model
from loopgate.models import TinyConfig, build_tiny_model, load_model, save_model
from loopgate.store import copy_files
from loopgate.store.artifacts import MANIFEST

DIMS = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "max_positions": 64}


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model of the same shape as ``tiny_model_dir`` but another seed: same file sizes, other weights."""
    model, tok = build_tiny_model(TinyConfig(seed=1, **DIMS))
    return save_model(model, tok, tmp_path_factory.mktemp("other") / "model")


@pytest.fixture
def with_adapter(workspace: Any, tiny_model_dir: Path, tmp_path: Path) -> Any:
    """base@1 (the tiny model) and support@1, a LoRA adapter on it with non-zero weights."""
    from peft import LoraConfig, get_peft_model

    register_model(workspace, "base", tiny_model_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(load_model(tiny_model_dir).model,
                                LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    register_model(workspace, "support", tmp_path / "adapter", base="base@1")
    return workspace


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_model(folder).model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkout_whose_weights_were_swapped_is_rebuilt_before_loading(
        workspace: Any, tiny_model_dir: Path, other_model_dir: Path) -> None:
    register_model(workspace, "base", tiny_model_dir)
    out = model_dir(workspace, "base@1")
    target = out / "model.safetensors"
    assert target.stat().st_size == (other_model_dir / "model.safetensors").stat().st_size
    st = target.stat()
    shutil.copyfile(other_model_dir / "model.safetensors", target)  # valid weights, the wrong ones
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not same(weights(out), weights(tiny_model_dir))  # what the old loader would have trained on

    again = model_dir(workspace, "base@1")
    assert again == out
    assert same(weights(again), weights(tiny_model_dir))
    base_dir, adapter = adapter_parts(workspace, "base@1")
    assert base_dir == out and adapter is None


def test_edited_merged_adapter_copy_is_merged_again(with_adapter: Any) -> None:
    ws = with_adapter
    merged = model_dir(ws, "support@1")
    assert merged == merged_dir(ws, "support@1") and (merged / MANIFEST).exists()
    expected = weights(merged)
    target = merged / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[-8:] = b"\x00" * 8  # the last weights of the last tensor zeroed: still a loadable file
    target.write_bytes(bytes(data))
    assert not same(weights(merged), expected)

    assert model_dir(ws, "support@1") == merged
    assert same(weights(merged), expected)


def test_merged_copy_without_a_manifest_is_not_trusted(with_adapter: Any) -> None:
    """Merged copies made before manifests existed cannot be checked: they are merged again once."""
    ws = with_adapter
    merged = model_dir(ws, "support@1")
    expected = weights(merged)
    (merged / MANIFEST).unlink()
    (merged / "model.safetensors").write_bytes(b"not even safetensors")
    assert model_dir(ws, "support@1") == merged
    assert same(weights(merged), expected) and (merged / MANIFEST).exists()
    assert sorted(copy_files(merged)) == sorted(p.name for p in merged.iterdir() if p.name != MANIFEST)


def test_adapter_checkout_is_verified_too(with_adapter: Any) -> None:
    ws = with_adapter
    _, adapter = adapter_parts(ws, "support@1")
    assert adapter is not None
    original = (adapter / "adapter_model.safetensors").read_bytes()
    (adapter / "adapter_model.safetensors").write_bytes(original[:-32] + b"\x00" * 32)
    _, again = adapter_parts(ws, "support@1")
    assert again == adapter and (adapter / "adapter_model.safetensors").read_bytes() == original
