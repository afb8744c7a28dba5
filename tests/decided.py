"""Test worlds built straight on the store: channels move only through a passing decision of each version (the
release rule, #26), so a world's releases record one, as the loop would after its gates passed."""

from __future__ import annotations

from typing import Any

from loopgate.records import Decision, Verdict
from loopgate.store import ChannelMove, Store


def passing(store: Store, *versions: str, requester: str = "test") -> dict[str, int]:
    """A passing decision for each version (one transaction); version → decision id."""
    made = store.add_decisions([Decision(version=v, verdict=Verdict.passed, policy_sha256="p" * 64, gates=[],
                                         requester=requester) for v in dict.fromkeys(versions)])
    return {d.version: d.id for d in made if d.id is not None}


def release(store: Store, moves: list[tuple[str, str, str]], *, kind: str = "release", reason: str = "test",
            actor: str = "test", **kw: Any) -> list[ChannelMove]:
    """``store.move_channels`` of versions that each get a passing decision first."""
    ids = passing(store, *(m[2] for m in moves))
    return store.move_channels(moves, kind=kind, reason=reason, actor=actor, decision_ids=ids, **kw)
