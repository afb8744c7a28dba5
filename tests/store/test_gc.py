"""Garbage collection keeps what a channel points at, its rollback target and adapter bases; nothing else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from decided import release

from loopgate.errors import ArtifactError
from loopgate.store import Store

MakeFiles = Callable[[str], dict[str, Path]]


@pytest.fixture
def history(store: Store, make_files: MakeFiles) -> Store:
    """base@1..4 with production base@1 → base@2 → base@3; support@1 an adapter on base@1, in production."""
    for i in range(1, 5):
        store.add_version("base", make_files(f"b{i}"))
    for v in ("base@1", "base@2", "base@3"):
        release(store, [("base", "production", v)], kind="release", reason="", actor="a")
    store.add_version("support", make_files("adapter"), kind="adapter", base_version="base@1")
    store.add_version("support", make_files("adapter2"), kind="adapter", base_version="base@4")
    release(store, [("support", "production", "support@1")], kind="release", reason="", actor="a")
    return store


def test_protected_versions(history: Store) -> None:
    # base@3 current, base@2 rollback target, support@1 current, base@1 its adapter base
    assert history.protected_versions() == {"base@1", "base@2", "base@3", "support@1"}


def test_dry_run_deletes_nothing(history: Store) -> None:
    before = sorted(p for p in history.artifacts.root.rglob("*") if p.is_file())
    entries = len(history.ledger())
    res = history.gc(keep_latest=0, dry_run=True)
    assert res["dry_run"] is True and res["deleted_blobs"] == 4 and res["freed_bytes"] == 0
    assert res["versions"] == ["base@4", "support@2"]
    assert sorted(p for p in history.artifacts.root.rglob("*") if p.is_file()) == before
    assert len(history.ledger()) == entries
    assert history.verify_version("base@4") == []


def test_gc_keeps_channels_rollback_targets_and_adapter_bases(history: Store) -> None:
    for v in ("base@1", "base@4"):
        history.checkout(v)  # a stale checkout must not keep a collected version loadable
    res = history.gc(keep_latest=0)
    assert res["versions"] == ["base@4", "support@2"] and res["deleted_blobs"] == 4 and res["freed_bytes"] > 0
    for kept in ("base@1", "base@2", "base@3", "support@1"):
        assert history.verify_version(kept) == []
        assert history.checkout(kept).is_dir()
    for gone in ("base@4", "support@2"):
        with pytest.raises(ArtifactError, match=f"of {gone} is missing"):
            history.checkout(gone)
        assert history.version(gone).id == gone  # the record stays; only its blobs went
    assert history.ledger()[-1].kind == "gc"
    assert history.ledger()[-1].payload["versions"] == ["base@4", "support@2"]
    assert history.verify_ledger().ok
    assert history.gc(keep_latest=0)["deleted_blobs"] == 0  # nothing left to collect


def test_keep_latest_keeps_each_lines_newest(history: Store) -> None:
    res = history.gc(keep_latest=1)
    assert res["versions"] == []
    assert "base@4" in res["kept_versions"] and "support@2" in res["kept_versions"]


def test_shared_blobs_survive(store: Store, make_files: MakeFiles) -> None:
    files = make_files("same")
    store.add_version("base", files)
    store.add_version("base", files)  # same content, a second version
    store.add_version("base", make_files("other"))
    release(store, [("base", "production", "base@1")], kind="release", reason="", actor="a")
    res = store.gc(keep_latest=0)
    assert res["versions"] == ["base@3"]  # base@2 shares every blob with the protected base@1
    assert store.verify_version("base@2") == []
