"""The repository of channels: where each line's staging, canary and production point, their history, and the
moves between them (each move goes through :func:`loopgate.store.moves.move_in`, which checks the release
rule)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from loopgate.errors import MoveRefused
from loopgate.store import moves as rule
from loopgate.store.ledger_repo import LedgerRepository
from loopgate.store.moves import CHANNELS, UNSEEN, ChannelMove
from loopgate.store.tables import ChannelMoveRow, ChannelRow, VersionRow


def _storable(text: str) -> str:
    """A refused input may hold what no database stores (a lone surrogate, NUL)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


class ChannelRepository(LedgerRepository):
    def channel(self, line: str, name: str = "production") -> str | None:
        with self.db.read() as s:
            row = s.get(ChannelRow, (line, name))
            return row.version_id if row else None

    def channels(self, line: str) -> dict[str, str | None]:
        return {c: self.channel(line, c) for c in CHANNELS}

    def channel_table(self) -> dict[str, dict[str, str]]:
        """Where every line's channels point, ``{line: {channel: version}}`` (set channels only), in one query."""
        out: dict[str, dict[str, str]] = {}
        with self.db.read() as s:
            for line, name, vid in s.execute(select(ChannelRow.line, ChannelRow.name, ChannelRow.version_id)):
                out.setdefault(line, {})[name] = vid
        return out

    def move_channels(self, moves: list[tuple[str, str, str]], *, kind: str, reason: str, actor: str,
                      decision_id: int | None = None,
                      expected: dict[tuple[str, str], str | None] | None = None,
                      forced: bool = False, decision_ids: dict[str, int] | None = None) -> list[ChannelMove]:
        """Move several (line, channel, version) pointers in ONE transaction (a release or a cascade).

        ``expected`` maps (line, channel) to the version the caller saw there when it decided the move
        (None: empty). A channel that moved since is a :class:`ConflictError` and nothing moves: exactly one
        of two concurrent releases or rollbacks of a line wins (compare-and-set under the writers' lock).
        A move the release rule forbids (:meth:`move_refusal`) is a :class:`MoveRefused`: nothing moves and
        the ledger records the refusal. ``forced`` marks an admin's rollback past the rule (recorded);
        ``decision_ids`` names each version's decision when one transaction releases several versions.
        """
        done: list[ChannelMove] = []
        try:
            with self.db.tx() as s:
                for line, name, version_id in moves:
                    saw = expected.get((line, name), UNSEEN) if expected is not None else UNSEEN
                    did = decision_ids.get(version_id, decision_id) if decision_ids else decision_id
                    done.append(rule.move_in(s, self.artifacts, line, name, version_id, kind=kind, reason=reason,
                                              actor=actor, decision_id=did, expected=saw, forced=forced))
        except MoveRefused as e:
            line, name, version_id = getattr(e, "move", moves[0] if moves else ("", "", ""))
            raise self.refuse_move(line, name, version_id, kind=kind, actor=actor, why=str(e)) from None
        return done

    def refuse_move(self, line: str, channel: str, version_id: str, *, kind: str, actor: str, why: str
                    ) -> MoveRefused:
        """Record a refused channel move in the ledger (nothing else changes) and return the error to raise."""
        why = _storable(why)
        self.record("channel.refused", _storable(f"{line}/{channel}"[:300]),
                    {"to": _storable(version_id), "kind": kind, "why": why}, actor=actor)
        err = MoveRefused(why)
        err.move = (line, channel, version_id)  # type: ignore[attr-defined]
        return err

    def move_refusal(self, line: str, channel: str, version_id: str, *, kind: str, decision_id: int | None,
                     forced: bool = False) -> str | None:
        """Why the release rule forbids this move, or None (read-only: what a verb checks before its work)."""
        with self.db.read() as s:
            return rule.move_refusal(s, self.artifacts, line, channel, version_id, kind=kind,
                                      decision_id=decision_id, forced=forced)

    def stale_since(self, version_id: str) -> datetime | None:
        """:func:`loopgate.store.moves.stale_since` in its own read."""
        with self.db.read() as s:
            return rule.stale_since(s, version_id)

    def production_held(self, line: str) -> set[str]:
        """Every version production held through a gated move (a release or a promotion), in one read."""
        with self.db.read() as s:
            return set(s.execute(select(ChannelMoveRow.to_version).where(
                ChannelMoveRow.line == line, ChannelMoveRow.channel == "production",
                ChannelMoveRow.kind.in_(("release", "promote")))).scalars())

    def held_production(self, line: str, version_id: str) -> bool:
        """:func:`loopgate.store.moves.held_production` in its own read."""
        with self.db.read() as s:
            return rule.held_production(s, line, version_id)

    def channel_history(self, line: str, name: str | None = None) -> list[ChannelMove]:
        with self.db.read() as s:
            q = select(ChannelMoveRow).where(ChannelMoveRow.line == line)
            if name is not None:
                q = q.where(ChannelMoveRow.channel == name)
            return [ChannelMove(id=r.id, line=r.line, channel=r.channel, from_version=r.from_version,
                                to_version=r.to_version, kind=r.kind, reason=r.reason, actor=r.actor,
                                decision_id=r.decision_id, created_at=r.created_at)
                    for r in s.execute(q.order_by(ChannelMoveRow.id)).scalars()]

    def rollback_target(self, line: str, name: str = "production") -> str | None:
        """The version the channel pointed at before its current one went live (what a rollback would restore).

        Moves that were themselves rollbacks are skipped: after rolling ``v3`` back to ``v2``, the target is
        what preceded ``v2`` (``v1``), never the bad ``v3`` that was just rolled back.
        """
        current = self.channel(line, name)
        for move in reversed(self.channel_history(line, name)):
            if move.kind == "rollback":
                continue
            if (move.to_version == current and move.from_version and move.from_version != current
                    and self.held_production(line, move.from_version)):
                return move.from_version
        return None

    def protected_versions(self) -> set[str]:
        """Versions that garbage collection must keep: every channel's current and previous target, and
        the versions they are built from (adapter bases), transitively."""
        keep: set[str] = set()
        with self.db.read() as s:
            for row in s.execute(select(ChannelRow)).scalars():
                keep.add(row.version_id)
            for move in s.execute(select(ChannelMoveRow)).scalars():
                current = s.get(ChannelRow, (move.line, move.channel))
                if current is not None and move.to_version == current.version_id and move.from_version:
                    keep.add(move.from_version)
            frontier = set(keep)
            while frontier:
                nxt = set()
                for vid in frontier:
                    v = s.get(VersionRow, vid)
                    if v is not None and v.base_version and v.base_version not in keep:
                        nxt.add(v.base_version)
                keep |= nxt
                frontier = nxt
        return keep
