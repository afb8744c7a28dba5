"""The canary analysis may run in several processes at once (two gateways, `loopgate canary status --analyse`):
each records its measurement under the registry's write lock, and one that comes second — its canary concluded
meanwhile, or the same samples measured — records nothing, so a canary is rolled back once and a failure is
counted once. Two store handles stand for two processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from decided import release

from loopgate.store import Store
from loopgate.store import gateway as gw


def check(store: Store, sizes: list[int], *, rollback: bool = False) -> Any:
    moves = [("base", "canary", "base@1", "rollback", None)] if rollback else []
    return gw.record_canary_check(store, line="base", canary_version="base@2", production_version="base@1",
                                  verdict="failed", outcome="rolled_back" if rollback else "watching",
                                  consecutive_failures=1, evidence={"sizes": sizes}, moves=moves, actor="gw")


def test_a_canary_is_concluded_and_a_measurement_counted_once(store: Store,
                                                              make_files: Callable[[str], dict[str, Path]]) -> None:
    for tag in ("v1", "v2"):
        store.add_version("base", make_files(tag), actor="ana")
    release(store, [("base", "production", "base@1"), ("base", "canary", "base@2")], kind="release",
                        reason="canary on", actor="ana")
    other = Store(store.home)  # a second gateway's handle on the same registry
    try:
        first, _ = check(store, [40, 40])
        assert first is not None
        assert check(other, [40, 40]) == (None, [])  # the same samples: not a second failure
        second, _ = check(other, [60, 60])
        assert second is not None and second.id == first.id + 1
        done, moves = check(store, [80, 80], rollback=True)
        assert done is not None and [m.to_version for m in moves] == ["base@1"]
        assert check(other, [81, 80], rollback=True) == (None, [])  # concluded already: no second rollback
        history = [m for m in store.channel_history("base", "canary") if m.kind == "rollback"]
        assert len(history) == 1 and store.channel("base", "canary") == "base@1"
        assert [c.consecutive_failures for c in gw.canary_checks(store, "base")] == [1, 1, 1]
        assert store.verify_ledger().ok
    finally:
        other.close()
