"""`audit verify --artifacts`: a full re-hash of every stored file and loadable copy that names each version
whose files are missing, corrupted or differ, and exits 1 when any is hit."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from decided import release

from loopgate.hashing import sha256_file
from loopgate.store import Store
from loopgate.store import artifacts as artifacts_mod

MakeFiles = Callable[[str], dict[str, Path]]
Cli = Callable[..., Any]


@pytest.fixture
def database() -> None:
    """SQLite only: these tests prove the artifact files; the registry's queries run on both databases in the
    other store tests (and PostgreSQL's runs of them would cost the test budget for nothing new)."""
    return None


def flip(path: Path, offset: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def three(store: Store, make_files: MakeFiles, tmp_path: Path) -> Store:
    """base@1, base@2 and support@1; base@2 and support@1 share one config blob; support@1 has update data."""
    store.add_version("base", make_files("a"))
    shared = make_files("b")
    store.add_version("base", shared)
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "p", "completion": "c"}\n')
    sha, _ = store.artifacts.put(data)
    store.add_version("support", {"model.safetensors": make_files("s")["model.safetensors"],
                                  "config.json": shared["config.json"]}, data_sha256=[sha])
    return store


def test_clean_store_passes(three: Store) -> None:
    three.checkout("base@1")
    rep = three.verify_artifacts()
    assert rep.ok and rep.hits == []
    assert (rep.versions, rep.blobs, rep.copies) == (3, 6, 1)  # 5 distinct model files + 1 data file


def test_every_version_sharing_a_corrupted_blob_is_named(three: Store) -> None:
    flip(three.artifacts.path_for(three.version("base@2").files["config.json"]))
    rep = three.verify_artifacts()
    assert not rep.ok
    assert rep.versions_hit == ["base@2", "support@1"]
    assert {(h.version, h.what, h.file) for h in rep.hits} == {("base@2", "blob", "config.json"),
                                                               ("support@1", "blob", "config.json")}
    assert all("corrupted" in h.problem for h in rep.hits)


def test_each_blob_is_hashed_once(three: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopgate.store import files as registry  # the artifact audit moved to store/files.py

    hashed: list[str] = []
    monkeypatch.setattr(registry, "sha256_file", lambda p: hashed.append(Path(p).name) or sha256_file(p))
    three.verify_artifacts()
    assert len(hashed) == len(set(hashed)) == 6


def test_missing_blob_and_missing_data_are_named(three: Store) -> None:
    three.artifacts.path_for(three.version("base@1").files["model.safetensors"]).unlink()
    three.artifacts.path_for(three.version("support@1").data_sha256[0]).unlink()
    rep = three.verify_artifacts()
    assert [(h.version, h.what) for h in rep.hits] == [("base@1", "blob"), ("support@1", "data")]
    assert all("missing" in h.problem for h in rep.hits)


def test_blobs_collected_by_gc_are_not_damage(three: Store) -> None:
    release(three, [("base", "production", "base@2"), ("support", "production", "support@1")],
                        kind="release", reason="", actor="a")
    assert three.gc(keep_latest=0)["versions"] == ["base@1"]
    rep = three.verify_artifacts()
    assert rep.ok and rep.collected == 2


def test_edited_checkout_is_named_even_when_its_stat_is_unchanged(three: Store) -> None:
    out = three.checkout("base@1")
    target = out / "model.safetensors"
    target.unlink()  # replaced by a file of the same size and mtime (not the blob any more)
    shutil.copyfile(three.artifacts.path_for(three.version("base@1").files["model.safetensors"]), target)
    st = target.stat()
    flip(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    (out / "extra.json").write_text("{}")
    rep = three.verify_artifacts()
    assert rep.versions_hit == ["base@1"]
    problems = sorted(h.problem for h in rep.hits)
    assert len(problems) == 2 and all(h.what == "checkout" for h in rep.hits)
    assert "extra.json does not belong to it" in problems[0] and "model.safetensors was changed" in problems[1]
    assert three.verify_artifacts().versions_hit == ["base@1"]  # an audit repairs nothing and blesses nothing
    three.checkout("base@1")  # the next use rebuilds it
    assert three.verify_artifacts().ok


def test_edited_merged_copy_is_named(three: Store) -> None:
    merged = three.home / "merged" / "support@1-0123456789ab"
    merged.mkdir(parents=True)
    (merged / "model.safetensors").write_bytes(b"merged weights")
    artifacts_mod.write_manifest(merged, {"model.safetensors": sha256_file(merged / "model.safetensors")})
    assert three.verify_artifacts().ok
    flip(merged / "model.safetensors")
    rep = three.verify_artifacts()
    assert [(h.version, h.what) for h in rep.hits] == [("support@1", "merged")]


# ------------------------------------------------------------------------------------------ the command


def test_cli_passes_on_a_clean_store_and_names_the_corrupted_version(workspace: Any, tiny_model_dir: Path,
                                                                     cli: Cli) -> None:
    for _ in range(2):
        assert cli("register", "base", "--model", tiny_model_dir, workspace=workspace.root).code == 0
    assert cli("register", "support", "--model", tiny_model_dir, workspace=workspace.root).code == 0
    workspace.store.checkout("base@1")

    ok = cli("audit", "verify", "--artifacts", workspace=workspace.root)
    assert ok.code == 0, ok.err
    assert "ledger intact" in ok.out and "artifacts intact" in ok.out
    data = cli("audit", "verify", "--artifacts", "--json", workspace=workspace.root).json()
    assert data["ok"] is True and data["ledger_ok"] is True and data["artifacts"]["hits"] == []

    # all three versions hold the same bytes, so one blob corrupted on disk hits every one of them
    v = workspace.store.version("base@1")
    flip(workspace.store.artifacts.path_for(v.files["model.safetensors"]), offset=200)
    bad = cli("audit", "verify", "--artifacts", workspace=workspace.root)
    assert bad.code == 1
    text = " ".join(bad.err.split())
    assert "3 versions hit (base@1, base@2, support@1)" in text and "Traceback" not in bad.err
    assert "base@1 blob model.safetensors: artifact" in text and "corrupted" in text
    res = cli("audit", "verify", "--artifacts", "--json", workspace=workspace.root)
    assert res.code == 1
    data = json.loads(res.out)
    assert data["ok"] is False and data["ledger_ok"] is True
    assert data["artifacts"]["versions_hit"] == ["base@1", "base@2", "support@1"]
    # without --artifacts the command checks the ledger only, as before
    assert cli("audit", "verify", workspace=workspace.root).code == 0
