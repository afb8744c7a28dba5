"""Storage without copies: a checkout is a folder of links to read-only blobs, and an adapter version costs its
adapter's bytes — evaluated as base + adapter merged in memory, never merged to disk."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from loopgate.loop.evaluation import evaluate_version
from loopgate.loop.versions import register_model, version_ref
from loopgate.models import TinyConfig, build_tiny_model, load_model, save_model
from loopgate.store.artifacts import MANIFEST

# big enough that a full copy (≈ 1.7 MB of float32 weights) cannot hide in the slack of small files
DIMS = {"hidden_size": 96, "num_layers": 4, "num_heads": 4, "intermediate_size": 256, "max_positions": 64}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tok = build_tiny_model(TinyConfig(seed=0, **DIMS))
    return save_model(model, tok, tmp_path_factory.mktemp("links") / "base")


@pytest.fixture(scope="module")
def adapter_dir(base_dir: Path) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(load_model(base_dir).model,
                                LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = base_dir.parent / "adapter"
    peft_model.save_pretrained(str(out))
    return out


def du_bytes(folder: Path) -> int:
    """``du``'s figure for a folder: every hard-linked file counted once."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(folder)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def checkout_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if not p.is_dir() and not p.name.startswith(MANIFEST)]


def assert_links_not_copies(ws: Any, version_id: str, folder: Path) -> None:
    files = ws.store.version(version_id).files
    present = checkout_files(folder)
    assert sorted(p.relative_to(folder).as_posix() for p in present) == sorted(files)
    for p in present:
        blob = ws.store.artifacts.path_for(files[p.relative_to(folder).as_posix()])
        # the same inode as the blob (a hard link), or a symlink to it: never a copy
        assert p.is_symlink() and p.resolve() == blob.resolve() or os.lstat(p).st_ino == os.stat(blob).st_ino
        assert stat.S_IMODE(os.stat(blob).st_mode) == 0o444  # read-only


def test_checkouts_are_links_and_an_adapter_version_costs_its_adapter(workspace: Any, base_dir: Path,
                                                                      adapter_dir: Path) -> None:
    ws = workspace
    suite = ws.root / "suites" / "reversal.jsonl"
    suite.parent.mkdir(exist_ok=True)
    suite.write_text("".join(f'{{"prompt": "{w} ->", "target": "{w[::-1]}"}}\n' for w in ("abc", "dog", "sun", "map")))
    register_model(ws, "base", base_dir)
    home = ws.store.home
    evaluate_version(ws, "base@1", ["reversal"])
    assert_links_not_copies(ws, "base@1", version_ref(ws, "base@1").base)
    before = du_bytes(home)

    register_model(ws, "support", adapter_dir, base="base@1")
    [ev] = evaluate_version(ws, "support@1", ["reversal"]).values()
    ref = version_ref(ws, "support@1")
    assert ref.adapter is not None
    assert_links_not_copies(ws, "support@1", ref.adapter)
    assert_links_not_copies(ws, "base@1", ref.base)
    after = du_bytes(home)

    adapter_bytes = du_bytes(adapter_dir)
    weights = (base_dir / "model.safetensors").stat().st_size
    assert adapter_bytes < weights / 10  # the figures below can tell an adapter from a full copy
    # the adapter's blobs, plus a few small files (evaluation record, cache entry, registry pages)
    assert after - before < adapter_bytes + 256 * 1024, (before, after, adapter_bytes, weights)
    assert not ws.store.merged_root.exists()
    assert ev.n == 4


def test_a_checkout_is_keyed_from_its_manifest_until_a_file_changes(workspace: Any, base_dir: Path,
                                                                    tmp_path: Path) -> None:
    """Evaluation and update provenance key a version's checkout by its manifest's hashes, not by reading its
    weights again; a file that no longer matches its stat signature is read, and the key follows the content."""
    import json
    import shutil

    from loopgate.evaluate.cache import directory_model_key

    ws = workspace
    register_model(ws, "base", base_dir)
    folder = version_ref(ws, "base@1").base
    assert directory_model_key(folder) == directory_model_key(base_dir)  # the same content, the same key
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["model.safetensors"]["sha256"] = "0" * 64  # a manifest that lies, stat signature intact
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert directory_model_key(folder) != directory_model_key(base_dir)  # so the weights were not read
    changed = tmp_path / "changed"
    shutil.copytree(base_dir, changed)
    (changed / "config.json").write_text((base_dir / "config.json").read_text() + "\n")
    (folder / "config.json").unlink()
    shutil.copy(changed / "config.json", folder / "config.json")  # a different file: its signature differs
    assert directory_model_key(folder) == directory_model_key(changed)  # every file re-read, the lie ignored
