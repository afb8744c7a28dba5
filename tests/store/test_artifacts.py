"""Content-addressed artifacts: atomic writes, hash verification on read, self-healing checkouts that are
verified (cheaply, by their manifest) every time they are reused."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loopgate.errors import ArtifactError
from loopgate.hashing import sha256_file
from loopgate.store import ArtifactStore, Store, copy_files
from loopgate.store import artifacts as artifacts_mod

MakeFiles = Callable[[str], dict[str, Path]]


@pytest.fixture
def database() -> None:
    """SQLite only: these tests prove the artifact files; the registry's queries run on both databases in the
    other store tests (and PostgreSQL's runs of them would cost the test budget for nothing new)."""
    return None


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
    assert contents(out) == {k: p.read_bytes() for k, p in src.items()}
    (out / "config.json").unlink()  # replaced by another file (as editors and save_pretrained do): not the blob
    (out / "config.json").write_text('{"tag": "edited by hand"}')
    (out / "model.safetensors").unlink()
    again = store.checkout("base@1")
    assert again == out
    assert contents(again) == {k: p.read_bytes() for k, p in src.items()}
    assert leftover_temp_dirs(store) == []


def contents(folder: Path) -> dict[str, bytes]:
    return {rel: (folder / rel).read_bytes() for rel in copy_files(folder)}


def flip_byte_keeping_size_and_mtime(path: Path, offset: int = 10) -> None:
    """The edit a size + mtime check cannot see: same length, timestamps put back."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("settle", [False, True], ids=["right-after-checkout", "after-a-clean-reuse"])
def test_checkout_edited_on_disk_is_never_reused(store: Store, make_files: MakeFiles, settle: bool) -> None:
    """A checkout file is a link to its blob: an edit in place reaches the blob, and is caught as corruption."""
    src = make_files("a")
    store.add_version("base", src)
    out = store.checkout("base@1")
    if settle:  # the manifest has been refreshed once, so the next reuse trusts stat signatures
        time.sleep(0.05)
        store.checkout("base@1")
    flip_byte_keeping_size_and_mtime(out / "model.safetensors")
    with pytest.raises(ArtifactError, match=r"of base@1 is corrupted"):
        store.checkout("base@1")
    assert not out.exists()  # never reused


def test_file_dropped_into_a_checkout_is_not_loaded(store: Store, make_files: MakeFiles) -> None:
    src = make_files("a")
    store.add_version("base", src)
    out = store.checkout("base@1")
    (out / "chat_template.jinja").write_text("{{ 'injected' }}")  # transformers would pick this up
    store.checkout("base@1")
    assert sorted(copy_files(out)) == sorted(src)


def test_a_clean_checkout_is_reused_without_reading_it(store: Store, make_files: MakeFiles,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store.add_version("base", make_files("a"))
    out = store.checkout("base@1")
    time.sleep(0.05)
    store.checkout("base@1")  # first reuse: written in the manifest's clock tick, so hashed once
    hashed: list[Path] = []
    real = artifacts_mod.sha256_file
    monkeypatch.setattr(artifacts_mod, "sha256_file", lambda p: hashed.append(Path(p)) or real(p))
    assert store.checkout("base@1") == out
    assert hashed == []
    (out / "config.json").touch()  # a new signature: re-hashed, found equal, kept
    assert store.checkout("base@1") == out
    assert hashed == [out / "config.json"]


def test_checkout_without_a_manifest_is_hashed_and_kept(store: Store, make_files: MakeFiles) -> None:
    """Checkouts made before manifests existed are verified by content, then get one."""
    src = make_files("a")
    store.add_version("base", src)
    out = store.checkout("base@1")
    (out / artifacts_mod.MANIFEST).unlink()
    inode = (out / "model.safetensors").stat().st_ino
    assert store.checkout("base@1") == out
    assert (out / "model.safetensors").stat().st_ino == inode  # reused, not rebuilt
    assert (out / artifacts_mod.MANIFEST).exists()


def test_copy_differences_names_each_problem(tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "a.safetensors").write_bytes(b"aaaa")
    (folder / "b.json").write_text("{}")
    artifacts_mod.write_manifest(folder, {"a.safetensors": sha256_file(folder / "a.safetensors"),
                                          "b.json": sha256_file(folder / "b.json")})
    assert artifacts_mod.copy_differences(folder) == []
    (folder / "a.safetensors").write_bytes(b"aaab")
    (folder / "b.json").unlink()
    (folder / "c.txt").write_text("new")
    problems = artifacts_mod.copy_differences(folder, full=True)
    assert [p.split(" ")[:2] for p in problems] == [["b.json", "is"], ["c.txt", "does"], ["a.safetensors", "was"]]
    assert "was changed" in problems[2]
