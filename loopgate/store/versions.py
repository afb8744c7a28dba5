"""The repository of lines and versions: registering lines, recording immutable versions with their files, and
the bulk reads whole-ecosystem views use (status, lineage, a wave's plan, the spec sync every command runs read
each table once: a bounded number of queries per command, however many lines the ecosystem has)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loopgate.errors import ConflictError, ImmutableError, LoopgateError, NotFoundError
from loopgate.names import is_line_name
from loopgate.records import utcnow
from loopgate.store import ledger as ledger_mod
from loopgate.store.session import Repository
from loopgate.store.tables import ArtifactRow, ChannelRow, LineRow, VersionFileRow, VersionRow

_IN_CHUNK = 900  # ids per ``IN (...)``: under every SQLite build's bound-parameter limit


class VersionInfo(BaseModel):
    """A version as the rest of the code sees it."""

    id: str
    line: str
    number: int
    kind: str
    source: str
    parent_version: str | None
    base_version: str | None
    recipe: dict[str, Any] | None
    data_sha256: list[str]
    seed: int | None
    provenance: dict[str, Any]
    created_by: str
    created_at: datetime
    files: dict[str, str] = {}


class VersionLink(NamedTuple):
    """How a version hangs together with others, without its files (bulk reads: lineage, status, plans; a
    plain tuple, as 100,000 of them are built per read)."""

    id: str
    line: str
    number: int
    kind: str
    parent_version: str | None
    base_version: str | None


def parse_version_id(version_id: str) -> tuple[str, int]:
    """``support@3`` → ("support", 3), with a clear error for anything else."""
    line, sep, num = version_id.rpartition("@")
    # ASCII digits only ('²' and '٣' pass str.isdigit), and a number a database integer can hold
    if not sep or not is_line_name(line) or not re.fullmatch(r"[0-9]{1,9}", num) or int(num) < 1:
        raise LoopgateError(f"{version_id[:80]!r} is not a version id; version ids read LINE@N, e.g. support@2")
    return line, int(num)


def _version_info(row: VersionRow, files: dict[str, str]) -> VersionInfo:
    return VersionInfo(
        id=row.id, line=row.line, number=row.number, kind=row.kind, source=row.source,
        parent_version=row.parent_version, base_version=row.base_version, recipe=row.recipe,
        data_sha256=list(row.data_sha256), seed=row.seed, provenance=dict(row.provenance),
        created_by=row.created_by, created_at=row.created_at, files=files,
    )


def _line_exists(s: Session, line: str) -> bool:
    return s.get(LineRow, line) is not None


class LineRepository(Repository):
    """The lines the spec declares."""

    def sync_lines(self, lines: dict[str, tuple[str, str | None]], actor: str = "loopgate") -> list[str]:
        """Register lines declared in the spec ({name: (tier, parent)}); returns the newly added names."""
        added = []
        with self.db.tx() as s:
            for name, (tier, parent) in lines.items():
                row = s.get(LineRow, name)
                if row is None:
                    s.add(LineRow(name=name, tier=tier, parent=parent, created_at=utcnow()))
                    ledger_mod.append(s, actor=actor, kind="line.register", subject=name,
                                      payload={"tier": tier, "parent": parent}, key=self.db.ledger_key)
                    added.append(name)
                elif (row.tier, row.parent) != (tier, parent):
                    ledger_mod.append(s, actor=actor, kind="line.change", subject=name,
                                      payload={"tier": tier, "parent": parent, "was": [row.tier, row.parent]},
                                      key=self.db.ledger_key)
                    row.tier, row.parent = tier, parent
        return added

    def lines(self) -> list[tuple[str, str, str | None]]:
        with self.db.read() as s:
            return [(r.name, r.tier, r.parent) for r in s.execute(select(LineRow).order_by(LineRow.name)).scalars()]

    def line_table(self) -> dict[str, tuple[str, str | None]]:
        """Every registered line, ``{name: (tier, parent)}``, in one query."""
        with self.db.read() as s:
            return {name: (tier, parent) for name, tier, parent in
                    s.execute(select(LineRow.name, LineRow.tier, LineRow.parent))}


class VersionRepository(LineRepository):
    """Immutable versions and the files they are made of."""

    def add_version(self, line: str, files: dict[str, Path], *, kind: str = "full", source: str = "register",
                    parent_version: str | None = None, base_version: str | None = None,
                    recipe: dict[str, Any] | None = None, data_sha256: list[str] | None = None,
                    seed: int | None = None, provenance: dict[str, Any] | None = None,
                    actor: str = "loopgate", number: int | None = None) -> VersionInfo:
        """Store the files and record a new immutable version ``line@N`` (N = next number, or ``number``)."""
        stored: dict[str, tuple[str, int]] = {rel: self.artifacts.put(p) for rel, p in files.items()}
        try:
            with self.db.tx() as s:
                if s.get(LineRow, line) is None:
                    raise NotFoundError(f"unknown line '{line}'; declare it in loopgate.yaml first")
                if number is None:  # under the writers' lock: no other writer can take it before we commit
                    number = (s.execute(select(func.max(VersionRow.number)).where(VersionRow.line == line))
                              .scalar() or 0) + 1
                vid = f"{line}@{number}"
                if s.get(VersionRow, vid) is not None:
                    raise ImmutableError(f"version {vid} already exists and versions are immutable")
                for sha, size in stored.values():
                    if s.get(ArtifactRow, sha) is None:
                        s.add(ArtifactRow(sha256=sha, size=size, created_at=utcnow()))
                row = VersionRow(
                    id=vid, line=line, number=number, kind=kind, source=source, parent_version=parent_version,
                    base_version=base_version, recipe=recipe, data_sha256=list(data_sha256 or []), seed=seed,
                    provenance=provenance or {}, created_by=actor, created_at=utcnow(),
                )
                s.add(row)
                s.flush()
                for rel, (sha, _) in stored.items():
                    s.add(VersionFileRow(version_id=vid, path=rel, sha256=sha))
                ledger_mod.append(s, actor=actor, kind="version.create", subject=vid, payload={
                    "source": source, "kind": kind, "parent_version": parent_version,
                    "base_version": base_version, "files": {rel: sha for rel, (sha, _) in stored.items()},
                    "data_sha256": list(data_sha256 or []), "seed": seed,
                }, key=self.db.ledger_key)
        except IntegrityError as err:  # writers are serialised, so this is a database outside Loopgate's rules
            raise ConflictError(f"recording {line}@{number} clashed with another write ({err.orig}); nothing "
                                "was recorded: check 'loopgate versions' and run the command again") from None
        return self.version(vid)

    def version(self, version_id: str) -> VersionInfo:
        line, _ = parse_version_id(version_id)
        with self.db.read() as s:
            row = s.get(VersionRow, version_id)
            if row is None:
                known = _line_exists(s, line)
                hint = f"; see 'loopgate versions {line}'" if known else f"; unknown line '{line}'"
                raise NotFoundError(f"no version {version_id}{hint}")
            files = {f.path: f.sha256 for f in s.execute(
                select(VersionFileRow).where(VersionFileRow.version_id == version_id)).scalars()}
            return _version_info(row, files)

    def versions(self, line: str) -> list[VersionInfo]:
        """The line's versions, oldest first (two queries: see :meth:`line_versions`)."""
        return self.line_versions(line)

    def all_versions(self) -> list[VersionInfo]:
        """Every version, by line name then number, in two queries (rows, then files)."""
        with self.db.read() as s:
            rows = list(s.execute(select(VersionRow).order_by(VersionRow.line, VersionRow.number)).scalars())
            files: dict[str, dict[str, str]] = {}
            for vid, path, sha in s.execute(
                    select(VersionFileRow.version_id, VersionFileRow.path, VersionFileRow.sha256)):
                files.setdefault(vid, {})[path] = sha
            return [_version_info(row, files.get(row.id, {})) for row in rows]

    def latest_version(self, line: str) -> VersionInfo | None:
        vs = self.versions(line)
        return vs[-1] if vs else None

    def line_versions(self, line: str) -> list[VersionInfo]:
        """:meth:`versions` of one line in two queries (rows, then all their files), not one per version."""
        with self.db.read() as s:
            if not _line_exists(s, line):
                raise NotFoundError(f"unknown line '{line}'")
            rows = list(s.execute(select(VersionRow).where(VersionRow.line == line)
                                  .order_by(VersionRow.number)).scalars())
            files: dict[str, dict[str, str]] = {}
            for vid, path, sha in s.execute(
                    select(VersionFileRow.version_id, VersionFileRow.path, VersionFileRow.sha256)
                    .join(VersionRow, VersionRow.id == VersionFileRow.version_id).where(VersionRow.line == line)):
                files.setdefault(vid, {})[path] = sha
            return [_version_info(row, files.get(row.id, {})) for row in rows]

    def latest_numbers(self) -> dict[str, int]:
        """Every line's newest version number (lines without versions are absent), in one query."""
        with self.db.read() as s:
            return {line: n for line, n in s.execute(
                select(VersionRow.line, func.max(VersionRow.number)).group_by(VersionRow.line))}

    def version_links(self, ids: Iterable[str] | None = None) -> dict[str, VersionLink]:
        """How versions hang together (line, number, kind, parent version, adapter base) without their files:
        every version, or the given ones — one query (chunked for very long id lists)."""
        cols = (VersionRow.id, VersionRow.line, VersionRow.number, VersionRow.kind, VersionRow.parent_version,
                VersionRow.base_version)
        out: dict[str, VersionLink] = {}
        with self.db.read() as s:
            if ids is None:
                batches: list[list[str] | None] = [None]
            else:
                wanted = sorted(set(ids))
                batches = [wanted[i:i + _IN_CHUNK] for i in range(0, len(wanted), _IN_CHUNK)]
            for batch in batches:
                q = select(*cols) if batch is None else select(*cols).where(VersionRow.id.in_(batch))
                for row in s.execute(q):
                    out[row[0]] = VersionLink(*row)
        return out

    def production_links(self) -> dict[str, VersionLink]:
        """Every line's production version as a :class:`VersionLink` (``{line: link}``), in one query."""
        q = (select(VersionRow.id, VersionRow.line, VersionRow.number, VersionRow.kind, VersionRow.parent_version,
                    VersionRow.base_version)
             .join(ChannelRow, ChannelRow.version_id == VersionRow.id).where(ChannelRow.name == "production"))
        with self.db.read() as s:
            return {row[1]: VersionLink(*row) for row in s.execute(q)}
