"""The folders a version is loaded from (its checkout: links to the stored blobs) are verified before every use:
a file replaced on disk is linked again from the stored blobs, a blob edited through a link is refused; an adapter
version is loaded as its base plus the adapter, merged in memory, never on disk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from loopgate.errors import ArtifactError, LoopgateError
from loopgate.loop.versions import adapter_parts, model_dir, register_model, version_ref
from loopgate.models import TinyConfig, build_tiny_model, load_model, save_model

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
    target.unlink()  # the link replaced by a file: valid weights, the wrong ones
    shutil.copyfile(other_model_dir / "model.safetensors", target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not same(weights(out), weights(tiny_model_dir))  # what the old loader would have trained on

    again = model_dir(workspace, "base@1")
    assert again == out
    assert same(weights(again), weights(tiny_model_dir))
    assert workspace.store.artifacts.unlinked_files(workspace.store.version("base@1").files, out) == []
    base_dir, adapter = adapter_parts(workspace, "base@1")
    assert base_dir == out and adapter is None


def test_weights_edited_through_the_checkout_are_never_loaded(workspace: Any, tiny_model_dir: Path) -> None:
    """A checkout file is a link to the stored blob: an edit in place is an edit of the blob, caught as such."""
    register_model(workspace, "base", tiny_model_dir)
    target = model_dir(workspace, "base@1") / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[-8:] = b"\x00" * 8  # still a loadable file
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"base@1 is corrupted"):
        version_ref(workspace, "base@1")


def test_adapter_version_is_loaded_from_base_plus_adapter_merged_in_memory(with_adapter: Any,
                                                                          tiny_model_dir: Path) -> None:
    ws = with_adapter
    ref = version_ref(ws, "support@1")
    assert ref.base == model_dir(ws, "base@1") and ref.adapter == ws.store.checkout("support@1")
    with pytest.raises(LoopgateError, match="adapter version"):
        model_dir(ws, "support@1")
    merged = load_model(tiny_model_dir, ref.adapter).model.merge_and_unload()  # type: ignore[operator]
    loaded = load_model(ref).model
    assert not hasattr(loaded, "peft_config")  # a plain model: merged in memory
    assert same({k: v.clone() for k, v in loaded.state_dict().items()}, merged.state_dict())
    assert not ws.store.merged_root.exists()  # nothing merged on disk


def test_adapter_checkout_is_verified_too(with_adapter: Any) -> None:
    ws = with_adapter
    _, adapter = adapter_parts(ws, "support@1")
    assert adapter is not None
    original = (adapter / "adapter_model.safetensors").read_bytes()
    (adapter / "adapter_model.safetensors").unlink()
    (adapter / "adapter_model.safetensors").write_bytes(original[:-32] + b"\x00" * 32)
    _, again = adapter_parts(ws, "support@1")
    assert again == adapter and (adapter / "adapter_model.safetensors").read_bytes() == original
