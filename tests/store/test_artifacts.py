"""Content-addressed artifacts: atomic writes, hash verification on read, self-healing checkouts."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from loopgate.errors import ArtifactError
from loopgate.hashing import sha256_file
from loopgate.store import ArtifactStore, Store

MakeFiles = Callable[[str], dict[str, Path]]


def blobs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_put_is_content_addressed_and_deduplicated(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    src = tmp_path / "w.safetensors"
    src.write_bytes(b"abc" * 1000)
    sha, size = store.put(src)
    assert sha == sha256_file(src) and size == 3000
    assert store.path_for(sha) == tmp_path / "artifacts" / sha[:2] / sha[2:]
    copy = tmp_path / "copy.bin"
    copy.write_bytes(b"abc" * 1000)
    assert store.put(copy) == (sha, 3000)
    assert blobs(tmp_path / "artifacts") == [store.path_for(sha)]  # one blob, no temp leftovers


def test_failed_put_leaves_no_partial_blob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    src = tmp_path / "big.safetensors"
    src.write_bytes(b"x" * (3 << 20))

    def copy_then_fail(fsrc, fdst, length: int = 0) -> None:  # type: ignore[no-untyped-def]
        fdst.write(fsrc.read(1 << 20))  # a third of the file reached the disk
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfileobj", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        store.put(src)
    assert blobs(tmp_path / "artifacts") == []
    assert not store.has(sha256_file(src))


def test_put_repairs_a_corrupted_existing_blob(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    src = tmp_path / "f"
    src.write_bytes(b"good content")
    sha, _ = store.put(src)
    store.path_for(sha).write_bytes(b"bad content!")
    store.put(src)
    assert store.verify(sha) == store.path_for(sha)


def test_corrupted_blob_names_the_version_on_checkout(store: Store, make_files: MakeFiles) -> None:
    v = store.add_version("base", make_files("a"))
    blob = store.artifacts.path_for(v.files["model.safetensors"])
    data = bytearray(blob.read_bytes())
    data[10] ^= 0xFF  # one flipped byte
    blob.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"artifact [0-9a-f]{12} of base@1 is corrupted"):
        store.checkout("base@1")
    assert not (store.home / "checkouts" / "base@1").exists()  # no half-built checkout
    assert leftover_temp_dirs(store) == []
    (problem,) = store.verify_version("base@1")
    assert "base@1:model.safetensors" in problem and "corrupted" in problem


def test_missing_blob_is_a_clear_error(store: Store, make_files: MakeFiles) -> None:
    v = store.add_version("base", make_files("a"))
    store.artifacts.path_for(v.files["config.json"]).unlink()
    with pytest.raises(ArtifactError, match=r"of base@1 is missing from .*restore it from a backup"):
        store.checkout("base@1")
    assert store.verify_version("base@1")[0].startswith("artifact ")
    assert store.verify_version("base@1") != []


def leftover_temp_dirs(store: Store) -> list[Path]:
    root = store.home / "checkouts"
    return [p for p in root.iterdir() if p.name.startswith(".")] if root.exists() else []


def test_checkout_restores_exact_files_and_rebuilds_a_hand_edited_one(store: Store, make_files: MakeFiles) -> None:
    src = make_files("a")
    store.add_version("base", src)
    out = store.checkout("base@1")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {k: p.read_bytes() for k, p in src.items()}
    (out / "config.json").write_text('{"tag": "edited by hand"}')
    (out / "model.safetensors").unlink()
    again = store.checkout("base@1")
    assert again == out
    assert {p.name: p.read_bytes() for p in again.iterdir()} == {k: p.read_bytes() for k, p in src.items()}
    assert leftover_temp_dirs(store) == []
