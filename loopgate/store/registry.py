"""The registry: one interface over lines, versions, artifacts, evaluations, decisions, channels,
approvals, loop steps and the ledger (MLflow-style: the rest of the code never writes SQL).

Every write runs in one transaction together with its ledger entry, so a crash leaves either both or
neither.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from loopgate.errors import ArtifactError, ConflictError, ImmutableError, LoopgateError, MoveRefused, NotFoundError
from loopgate.hashing import sha256_file
from loopgate.names import is_line_name
from loopgate.records import Decision, Evaluation, LedgerEntry, utcnow
from loopgate.store import ledger as ledger_mod
from loopgate.store.artifacts import MANIFEST, ArtifactStore, copy_differences
from loopgate.store.db import (
    ApprovalRow,
    ArtifactRow,
    ChannelMoveRow,
    ChannelRow,
    DecisionRow,
    EvaluationRow,
    LedgerRow,
    LineRow,
    StepRow,
    VersionFileRow,
    VersionRow,
)

CHANNELS = ("staging", "canary", "production")
_UNSEEN = object()  # no version was seen on the channel: the move is not a compare-and-set
MIGRATIONS = Path(__file__).parent / "migrations"


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


class ChannelMove(BaseModel):
    id: int
    line: str
    channel: str
    from_version: str | None
    to_version: str
    kind: str
    reason: str
    actor: str
    decision_id: int | None
    created_at: datetime


class Approval(BaseModel):
    version: str
    approver: str
    reason: str
    overrides: list[str]
    created_at: datetime
    decision_id: int | None = None  # the decision it approves (None: recorded before approvals bound to one)


class ArtifactHit(BaseModel):
    """One way a version's stored files are not what was recorded."""

    version: str
    what: str  # blob (a stored file) | data (its update data) | checkout | merged (a loadable copy)
    file: str
    problem: str


class ArtifactReport(BaseModel):
    """A full re-hash of every stored file and every loadable copy (``loopgate audit verify --artifacts``)."""

    ok: bool
    versions: int
    blobs: int
    bytes: int
    copies: int
    collected: int  # blobs removed on purpose by garbage collection (their versions are no longer loadable)
    hits: list[ArtifactHit]

    @property
    def versions_hit(self) -> list[str]:
        return sorted({h.version for h in self.hits})


class VersionLink(NamedTuple):
    """How a version hangs together with others, without its files (bulk reads: lineage, status, plans; a
    plain tuple, as 100,000 of them are built per read)."""

    id: str
    line: str
    number: int
    kind: str
    parent_version: str | None
    base_version: str | None


_IN_CHUNK = 900  # ids per ``IN (...)``: under every SQLite build's bound-parameter limit


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


class Store:
    """The registry of one workspace: ``<workspace>/.loopgate`` (SQLite, WAL) or a database URL."""

    def __init__(self, home: str | Path, url: str | None = None) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.url = url or os.environ.get("LOOPGATE_DATABASE_URL") or f"sqlite:///{self.home / 'registry.db'}"
        self.engine: Engine = create_engine(self.url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        # writes go through an engine flagged as the writer: SQLite takes its write lock when the
        # transaction begins (BEGIN IMMEDIATE), so two writers queue instead of failing half way
        self._writer = self.engine.execution_options(loopgate_write=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._writer, expire_on_commit=False)
        # a snapshot for reads that must see one moment (the ledger walk against its head)
        self._snapshot = (self.engine.execution_options(isolation_level="REPEATABLE READ")
                          if self.engine.dialect.name == "postgresql" else self.engine)
        self.artifacts = ArtifactStore(self.home / "artifacts")
        self.ledger_key = os.environ.get("LOOPGATE_LEDGER_KEY") or None
        self._migrate()
        self._adopt_file_anchor()

    # ------------------------------------------------------------------ plumbing

    def _migrate(self) -> None:
        if self._schema_at_head():  # every command opens the store: no Alembic import when nothing is to do
            return
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        with self.engine.connect() as conn:
            # every CLI call opens the store: skip Alembic's environment when the schema is already at head
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
        with self._writer.begin() as conn:
            # two clients opening a new database at once: the second waits, then finds it migrated
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7240012)")
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _adopt_file_anchor(self) -> None:
        """Older Loopgates kept the ledger head in ``ledger.head`` beside the database: carry it over once."""
        anchor = self.home / "ledger.head"
        if anchor.exists():
            with self._tx() as s:
                ledger_mod.adopt_file_anchor(s, anchor)
            anchor.replace(anchor.with_name("ledger.head.migrated"))

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One write transaction; writers are serialised (the ledger head's row lock on PostgreSQL, the write
        lock on SQLite), so what a write reads inside it is what it commits against."""
        with self._write_sessions() as s, s.begin():
            s.info["ledger_key"] = self.ledger_key  # every ledger_mod.append in it signs (store/gateway.py too)
            ledger_mod.lock_head(s)  # first, always: one lock order for every writer, so no deadlocks
            yield s
            s.flush()
            _kill_point("store.before-commit")

    def _read(self) -> Session:
        return self._sessions()

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ lines

    def sync_lines(self, lines: dict[str, tuple[str, str | None]], actor: str = "loopgate") -> list[str]:
        """Register lines declared in the spec ({name: (tier, parent)}); returns the newly added names."""
        added = []
        with self._tx() as s:
            for name, (tier, parent) in lines.items():
                row = s.get(LineRow, name)
                if row is None:
                    s.add(LineRow(name=name, tier=tier, parent=parent, created_at=utcnow()))
                    ledger_mod.append(s, actor=actor, kind="line.register", subject=name,
                                      payload={"tier": tier, "parent": parent}, key=self.ledger_key)
                    added.append(name)
                elif (row.tier, row.parent) != (tier, parent):
                    ledger_mod.append(s, actor=actor, kind="line.change", subject=name,
                                      payload={"tier": tier, "parent": parent, "was": [row.tier, row.parent]},
                                      key=self.ledger_key)
                    row.tier, row.parent = tier, parent
        return added

    def lines(self) -> list[tuple[str, str, str | None]]:
        with self._read() as s:
            return [(r.name, r.tier, r.parent) for r in s.execute(select(LineRow).order_by(LineRow.name)).scalars()]

    # ------------------------------------------------------------------ versions

    def add_version(self, line: str, files: dict[str, Path], *, kind: str = "full", source: str = "register",
                    parent_version: str | None = None, base_version: str | None = None,
                    recipe: dict[str, Any] | None = None, data_sha256: list[str] | None = None,
                    seed: int | None = None, provenance: dict[str, Any] | None = None,
                    actor: str = "loopgate", number: int | None = None) -> VersionInfo:
        """Store the files and record a new immutable version ``line@N`` (N = next number, or ``number``)."""
        stored: dict[str, tuple[str, int]] = {rel: self.artifacts.put(p) for rel, p in files.items()}
        try:
            with self._tx() as s:
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
                }, key=self.ledger_key)
        except IntegrityError as err:  # writers are serialised, so this is a database outside Loopgate's rules
            raise ConflictError(f"recording {line}@{number} clashed with another write ({err.orig}); nothing "
                                "was recorded: check 'loopgate versions' and run the command again") from None
        return self.version(vid)

    def version(self, version_id: str) -> VersionInfo:
        line, _ = parse_version_id(version_id)
        with self._read() as s:
            row = s.get(VersionRow, version_id)
            if row is None:
                known = self._line_exists(s, line)
                hint = f"; see 'loopgate versions {line}'" if known else f"; unknown line '{line}'"
                raise NotFoundError(f"no version {version_id}{hint}")
            files = {f.path: f.sha256 for f in s.execute(
                select(VersionFileRow).where(VersionFileRow.version_id == version_id)).scalars()}
            return _version_info(row, files)

    @staticmethod
    def _line_exists(s: Session, line: str) -> bool:
        return s.get(LineRow, line) is not None

    def versions(self, line: str) -> list[VersionInfo]:
        """The line's versions, oldest first (two queries: see :meth:`line_versions`)."""
        return self.line_versions(line)

    def all_versions(self) -> list[VersionInfo]:
        """Every version, by line name then number, in two queries (rows, then files)."""
        with self._read() as s:
            rows = list(s.execute(select(VersionRow).order_by(VersionRow.line, VersionRow.number)).scalars())
            files: dict[str, dict[str, str]] = {}
            for vid, path, sha in s.execute(
                    select(VersionFileRow.version_id, VersionFileRow.path, VersionFileRow.sha256)):
                files.setdefault(vid, {})[path] = sha
            return [_version_info(row, files.get(row.id, {})) for row in rows]

    def latest_version(self, line: str) -> VersionInfo | None:
        vs = self.versions(line)
        return vs[-1] if vs else None

    # ------------------------------------------------------------------ bulk reads
    # Whole-ecosystem views (status, lineage, a wave's plan, the spec sync every command runs) read each table
    # once: a bounded number of queries per command, however many lines the ecosystem has.

    def _schema_at_head(self) -> bool:
        """Whether the database's Alembic revision is the newest migration, read without importing Alembic
        (~0.1 s of every command): each migration file names its ``revision`` and ``down_revision``; anything
        unexpected answers False and :meth:`_migrate` asks Alembic itself."""
        import re

        revisions: dict[str, str | None] = {}
        for path in (MIGRATIONS / "versions").glob("*.py"):
            text = path.read_text(encoding="utf-8")
            rev = re.findall(r'^revision\s*=\s*["\']([\w-]+)["\']\s*$', text, re.M)
            down = re.findall(r'^down_revision\s*=\s*(?:None|["\']([\w-]+)["\'])\s*$', text, re.M)
            if len(rev) != 1 or len(down) != 1:
                return False
            revisions[rev[0]] = down[0] or None
        heads = set(revisions) - set(revisions.values())
        if len(heads) != 1:
            return False
        try:
            with self.engine.connect() as conn:
                current = [r for (r,) in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
        except Exception:  # no table yet (a new database): Alembic creates it
            return False
        return current == list(heads)

    def line_table(self) -> dict[str, tuple[str, str | None]]:
        """Every registered line, ``{name: (tier, parent)}``, in one query."""
        with self._read() as s:
            return {name: (tier, parent) for name, tier, parent in
                    s.execute(select(LineRow.name, LineRow.tier, LineRow.parent))}

    def channel_table(self) -> dict[str, dict[str, str]]:
        """Where every line's channels point, ``{line: {channel: version}}`` (set channels only), in one query."""
        out: dict[str, dict[str, str]] = {}
        with self._read() as s:
            for line, name, vid in s.execute(select(ChannelRow.line, ChannelRow.name, ChannelRow.version_id)):
                out.setdefault(line, {})[name] = vid
        return out

    def latest_numbers(self) -> dict[str, int]:
        """Every line's newest version number (lines without versions are absent), in one query."""
        with self._read() as s:
            return {line: n for line, n in s.execute(
                select(VersionRow.line, func.max(VersionRow.number)).group_by(VersionRow.line))}

    def version_links(self, ids: Iterable[str] | None = None) -> dict[str, VersionLink]:
        """How versions hang together (line, number, kind, parent version, adapter base) without their files:
        every version, or the given ones — one query (chunked for very long id lists)."""
        cols = (VersionRow.id, VersionRow.line, VersionRow.number, VersionRow.kind, VersionRow.parent_version,
                VersionRow.base_version)
        out: dict[str, VersionLink] = {}
        with self._read() as s:
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
        with self._read() as s:
            return {row[1]: VersionLink(*row) for row in s.execute(q)}

    def line_versions(self, line: str) -> list[VersionInfo]:
        """:meth:`versions` of one line in two queries (rows, then all their files), not one per version."""
        with self._read() as s:
            if not self._line_exists(s, line):
                raise NotFoundError(f"unknown line '{line}'")
            rows = list(s.execute(select(VersionRow).where(VersionRow.line == line)
                                  .order_by(VersionRow.number)).scalars())
            files: dict[str, dict[str, str]] = {}
            for vid, path, sha in s.execute(
                    select(VersionFileRow.version_id, VersionFileRow.path, VersionFileRow.sha256)
                    .join(VersionRow, VersionRow.id == VersionFileRow.version_id).where(VersionRow.line == line)):
                files.setdefault(vid, {})[path] = sha
            return [_version_info(row, files.get(row.id, {})) for row in rows]

    # ------------------------------------------------------------------ folders the store owns
    # Everything Loopgate writes under its home is named here, so gc and the audit find it by these methods
    # and no other layer builds a path under the home by convention.

    @property
    def checkouts_root(self) -> Path:
        """Loadable folders of versions' own files (links to the blobs), one folder per version."""
        return self.home / "checkouts"

    @property
    def merged_root(self) -> Path:
        """Where older Loopgates kept adapters merged onto their base; only audited and collected now (an
        adapter version is loaded as base + adapter and merged in memory, never on disk)."""
        return self.home / "merged"

    def merged_dirs(self, version_id: str) -> list[Path]:
        """Every merged copy an older Loopgate left for a version."""
        return sorted(self.merged_root.glob(f"{version_id}-*"))

    def work_dir(self, key: str) -> Path:
        """A fresh, empty scratch folder for one run (a killed run's leftovers are removed: runs restart)."""
        work = self.home / "work" / key
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        return work

    def remove_work_dir(self, key: str) -> None:
        """Drop a run's scratch folder once what it produced is stored."""
        shutil.rmtree(self.home / "work" / key, ignore_errors=True)

    def cache_dir(self, kind: str) -> Path:
        """A content-keyed cache folder (``evaluations``, ``profiles``); entries are safe to delete."""
        return self.home / "cache" / kind

    def checkout(self, version_id: str) -> Path:
        """The version's own files in a folder of links to its read-only blobs (verified against their hashes)."""
        v = self.version(version_id)
        if not v.files:
            raise ArtifactError(f"version {version_id} has no files")
        return self.artifacts.checkout(v.files, self.checkouts_root / version_id, owner=version_id)

    def verify_version(self, version_id: str) -> list[str]:
        """Problems with the version's artifacts (missing or corrupted); empty when intact."""
        v = self.version(version_id)
        problems = []
        for rel, sha in v.files.items():
            try:
                self.artifacts.verify(sha, f"{version_id}:{rel}")
            except ArtifactError as err:
                problems.append(str(err))
        return problems

    def verify_artifacts(self, workers: int | None = None) -> ArtifactReport:
        """Re-hash every blob a version points at (each once, however many versions share it), every
        checkout and every merged copy; name each version whose files are missing, corrupted or differ."""
        with self._read() as s:
            files = [(f.version_id, f.path, f.sha256) for f in s.execute(select(VersionFileRow)).scalars()]
            data = [(vid, list(shas)) for vid, shas in s.execute(select(VersionRow.id, VersionRow.data_sha256))]
            collected = {sha for row in s.execute(select(LedgerRow).where(LedgerRow.kind == "gc")).scalars()
                         for sha in ledger_mod.to_entry(row).payload.get("blobs", [])}
        wanted = sorted({sha for _, _, sha in files} | {sha for _, shas in data for sha in shas})

        def status(sha: str) -> tuple[str, int]:
            p = self.artifacts.path_for(sha)
            if not p.exists():
                return "missing", 0
            actual = sha256_file(p)  # hashlib releases the GIL: threads hash blobs in parallel
            return ("" if actual == sha else f"corrupted: its content hashes to {actual[:12]}"), p.stat().st_size

        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            found = dict(zip(wanted, pool.map(status, wanted), strict=True))
        hits: list[ArtifactHit] = []
        gone = 0
        for vid, rel, sha in files:
            problem, _ = found[sha]
            if problem == "missing" and sha in collected:
                gone += 1
                continue
            if problem:
                hits.append(ArtifactHit(version=vid, what="blob", file=rel,
                                        problem=f"artifact {sha[:12]} is {problem}"))
        for vid, shas in data:
            for sha in shas:
                if found[sha][0]:
                    hits.append(ArtifactHit(version=vid, what="data", file=sha[:12],
                                            problem=f"update data {sha[:12]} is {found[sha][0]}"))
        by_version: dict[str, dict[str, str]] = {}
        for vid, rel, sha in files:
            by_version.setdefault(vid, {})[rel] = sha
        copies = 0
        for what, root in (("checkout", self.checkouts_root), ("merged", self.merged_root)):
            for folder in sorted(root.iterdir()) if root.is_dir() else []:
                if folder.name.startswith(".") or not folder.is_dir():
                    continue  # a copy being built
                if what == "checkout":
                    vid, expected = folder.name, by_version.get(folder.name)
                    if expected is None:
                        continue  # not a version's folder: nothing ever loads it
                else:
                    vid, expected = folder.name.rpartition("-")[0], None  # checked against its own manifest
                    if vid not in by_version or not (folder / MANIFEST).exists():
                        continue  # made before merged copies had manifests: merged again before any use
                copies += 1
                for problem in copy_differences(folder, expected, full=True):
                    hits.append(ArtifactHit(version=vid, what=what, file=folder.name, problem=(
                        f"{folder}: {problem}; it is rebuilt from the store on its next use")))
        hits.sort(key=lambda h: (h.version, h.what, h.file))
        return ArtifactReport(ok=not hits, versions=len({vid for vid, _ in data}), blobs=len(wanted),
                              bytes=sum(size for _, size in found.values()), copies=copies, collected=gone,
                              hits=hits)

    # ------------------------------------------------------------------ evaluations

    def add_evaluation(self, evaluation: Evaluation, actor: str = "loopgate") -> Evaluation:
        """Record an evaluation; recording the same (version, suite hash) twice keeps the first."""
        with self._tx() as s:
            existing = s.execute(select(EvaluationRow).where(
                EvaluationRow.version_id == evaluation.version,
                EvaluationRow.suite_sha256 == evaluation.suite_sha256)).scalar_one_or_none()
            if existing is not None:
                return Evaluation.model_validate(existing.record)
            if s.get(VersionRow, evaluation.version) is None:
                raise NotFoundError(f"no version {evaluation.version}")
            s.add(EvaluationRow(version_id=evaluation.version, suite=evaluation.suite,
                                suite_sha256=evaluation.suite_sha256, score=evaluation.score, n=evaluation.n,
                                record=evaluation.model_dump(mode="json"), created_at=utcnow()))
            ledger_mod.append(s, actor=actor, kind="evaluation", subject=evaluation.version, payload={
                "suite": evaluation.suite, "suite_sha256": evaluation.suite_sha256, "score": evaluation.score,
                "n": evaluation.n, "source": evaluation.source}, key=self.ledger_key)
        return evaluation

    def evaluations(self, version_id: str, suite_sha256: str | None = None) -> list[Evaluation]:
        with self._read() as s:
            q = select(EvaluationRow).where(EvaluationRow.version_id == version_id)
            if suite_sha256 is not None:
                q = q.where(EvaluationRow.suite_sha256 == suite_sha256)
            return [Evaluation.model_validate(r.record) for r in s.execute(q.order_by(EvaluationRow.id)).scalars()]

    def evaluation(self, version_id: str, suite_sha256: str) -> Evaluation | None:
        found = self.evaluations(version_id, suite_sha256)
        return found[0] if found else None

    # ------------------------------------------------------------------ decisions and approvals

    def add_decision(self, decision: Decision, actor: str = "loopgate") -> Decision:
        return self.add_decisions([decision], actor=actor)[0]

    def add_decisions(self, decisions: list[Decision], actor: str = "loopgate") -> list[Decision]:
        """Record decisions (one transaction, each with its ledger entry); returns them with their ids."""
        stored: list[Decision] = []
        with self._tx() as s:
            for decision in decisions:
                stored.append(self._add_decision(s, decision, actor))
        return stored

    def _add_decision(self, s: Session, decision: Decision, actor: str) -> Decision:
        row = DecisionRow(version_id=decision.version, verdict=decision.verdict.value,
                          policy_sha256=decision.policy_sha256, record={}, created_at=utcnow())
        s.add(row)
        s.flush()
        stored = decision.model_copy(update={"id": row.id})
        row.record = stored.model_dump(mode="json")
        ledger_mod.append(s, actor=actor, kind="decision", subject=decision.version, payload={
            "decision_id": row.id, "verdict": decision.verdict.value, "policy_sha256": decision.policy_sha256,
            "gates": {g.name: g.verdict.value for g in decision.gates}, "baselines": decision.baselines},
            key=self.ledger_key)
        return stored

    def decisions(self, version_id: str | None = None) -> list[Decision]:
        with self._read() as s:
            q = select(DecisionRow).order_by(DecisionRow.id)
            if version_id is not None:
                q = q.where(DecisionRow.version_id == version_id)
            return [Decision.model_validate(r.record) for r in s.execute(q).scalars()]

    def add_approval(self, version_id: str, approver: str, reason: str, overrides: list[str] | None = None, *,
                     decision_id: int) -> None:
        """Record an approval of one decision of the version (it approves that decision only, once)."""
        self.version(version_id)
        with self._tx() as s:
            d = s.get(DecisionRow, decision_id)
            if d is None or d.version_id != version_id:
                raise NotFoundError(f"no decision {decision_id} of {version_id} to approve")
            row = ApprovalRow(version_id=version_id, approver=approver, reason=reason,
                              overrides=list(overrides or []), created_at=utcnow(), decision_id=decision_id)
            s.add(row)
            s.flush()
            ledger_mod.append(s, actor=approver, kind="approval", subject=version_id,
                              payload={"approval_id": row.id, "decision_id": decision_id, "reason": reason,
                                       "overrides": list(overrides or [])}, key=self.ledger_key)

    def approvals(self, version_id: str) -> list[Approval]:
        with self._read() as s:
            rows = s.execute(select(ApprovalRow).where(ApprovalRow.version_id == version_id)
                             .order_by(ApprovalRow.id)).scalars()
            return [Approval(version=r.version_id, approver=r.approver, reason=r.reason,
                             overrides=list(r.overrides), created_at=r.created_at, decision_id=r.decision_id)
                    for r in rows]

    # ------------------------------------------------------------------ channels

    def channel(self, line: str, name: str = "production") -> str | None:
        with self._read() as s:
            row = s.get(ChannelRow, (line, name))
            return row.version_id if row else None

    def channels(self, line: str) -> dict[str, str | None]:
        return {c: self.channel(line, c) for c in CHANNELS}

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
            with self._tx() as s:
                for line, name, version_id in moves:
                    saw = expected.get((line, name), _UNSEEN) if expected is not None else _UNSEEN
                    did = decision_ids.get(version_id, decision_id) if decision_ids else decision_id
                    done.append(self._move_in(s, line, name, version_id, kind=kind, reason=reason, actor=actor,
                                              decision_id=did, expected=saw, forced=forced))
        except MoveRefused as e:
            line, name, version_id = getattr(e, "move", moves[0] if moves else ("", "", ""))
            raise self.refuse_move(line, name, version_id, kind=kind, actor=actor, why=str(e)) from None
        return done

    def refuse_move(self, line: str, channel: str, version_id: str, *, kind: str, actor: str, why: str
                    ) -> MoveRefused:
        """Record a refused channel move in the ledger (nothing else changes) and return the error to raise."""
        def storable(text: str) -> str:  # a refused input may hold what no database stores (a lone surrogate)
            return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")

        why = storable(why)
        self.record("channel.refused", storable(f"{line}/{channel}"[:300]),
                    {"to": storable(version_id), "kind": kind, "why": why}, actor=actor)
        err = MoveRefused(why)
        err.move = (line, channel, version_id)  # type: ignore[attr-defined]
        return err

    def move_refusal(self, line: str, channel: str, version_id: str, *, kind: str, decision_id: int | None,
                     forced: bool = False) -> str | None:
        """Why the release rule forbids this move, or None (read-only: what a verb checks before its work)."""
        with self._read() as s:
            return self._move_refusal(s, line, channel, version_id, kind=kind, decision_id=decision_id,
                                      forced=forced)

    def _move_refusal(self, s: Session, line: str, channel: str, version_id: str, *, kind: str,
                      decision_id: int | None, forced: bool) -> str | None:
        """The release rule, checked at the one place a channel pointer changes, so no front end and no verb
        can go around it: the version is this line's; its files (and its adapter base's) are still stored;
        a release or promotion names a passing decision of this version made after the version was last
        rolled back; a rollback goes only to a version that production held through a release or promotion
        (an admin may force past that last check, with a reason)."""
        if channel not in CHANNELS:
            return f"unknown channel '{channel}'; channels are {', '.join(CHANNELS)}"
        v = s.get(VersionRow, version_id)
        if v is None:
            raise NotFoundError(f"no version {version_id}")
        if v.line != line:
            return f"{version_id} is a version of '{v.line}', not of '{line}'"
        seen: set[str] = set()
        cur: VersionRow | None = v
        while cur is not None and cur.id not in seen:
            seen.add(cur.id)
            shas = s.execute(select(VersionFileRow.sha256).where(VersionFileRow.version_id == cur.id)).scalars()
            if any(not self.artifacts.has(sha) for sha in shas):
                which = "its" if cur.id == version_id else f"its base {cur.id}'s"
                return (f"{version_id} cannot be served: {which} files were garbage-collected (or are missing); "
                        "re-register it as a new version to gate it again")
            cur = s.get(VersionRow, cur.base_version) if cur.base_version else None
        if kind in ("release", "promote"):
            if decision_id is None:
                return (f"a {kind} of {version_id} needs a passing decision; gate it with "
                        f"'loopgate release {version_id}'")
            d = s.get(DecisionRow, decision_id)
            if d is None or d.version_id != version_id:
                return f"decision {decision_id} is not a decision of {version_id}"
            if d.verdict != "pass":
                return (f"{version_id}'s decision {decision_id} is '{d.verdict}', not a pass: it may not move "
                        f"{line}/{channel}")
            if self._recorded_verdict(s, version_id, decision_id) != "pass":
                return (f"decision {decision_id} of {version_id} says pass but its ledger entry does not: the "
                        "decisions table was edited beside the ledger (run 'loopgate audit verify')")
            stale = self._stale_since(s, version_id)
            if stale is not None and _aware(d.created_at) <= stale:
                return (f"{version_id}'s decision {decision_id} was made before {version_id} was rolled back "
                        f"({stale:%Y-%m-%d %H:%M:%S}); release it again for a new decision (and new approvals)")
        elif kind == "rollback" and not forced and not self._held_production(s, line, version_id):
            return (f"{version_id} was never released to {line}'s production, so it is not a rollback target "
                    f"(roll back only to a version production held: see 'loopgate channels {line} --history'); "
                    "an admin may force it with --force and a reason")
        return None

    @staticmethod
    def _recorded_verdict(s: Session, version_id: str, decision_id: int) -> str | None:
        """The verdict the ledger recorded for a decision (what a forged row cannot change)."""
        import json

        for payload in s.execute(select(LedgerRow.payload).where(
                LedgerRow.kind == "decision", LedgerRow.subject == version_id)).scalars():
            entry = json.loads(payload)
            if entry.get("decision_id") == decision_id:
                return str(entry.get("verdict"))
        return None

    @staticmethod
    def _held_production(s: Session, line: str, version_id: str) -> bool:
        """Whether production held the version through a gated move (a release or a promotion)."""
        hit = s.execute(select(ChannelMoveRow.id).where(
            ChannelMoveRow.line == line, ChannelMoveRow.channel == "production",
            ChannelMoveRow.to_version == version_id, ChannelMoveRow.kind.in_(("release", "promote"))).limit(1))
        return hit.scalar_one_or_none() is not None

    @staticmethod
    def _stale_since(s: Session, version_id: str) -> datetime | None:
        """When the version was last rolled back off a channel: its decisions and approvals from before that
        are spent (a rolled-back version ships again only through a new decision)."""
        row = s.execute(select(ChannelMoveRow.created_at).where(
            ChannelMoveRow.from_version == version_id, ChannelMoveRow.kind == "rollback")
            .order_by(ChannelMoveRow.id.desc()).limit(1)).scalar_one_or_none()
        return _aware(row) if row is not None else None

    def stale_since(self, version_id: str) -> datetime | None:
        """:meth:`_stale_since` in its own read."""
        with self._read() as s:
            return self._stale_since(s, version_id)

    def production_held(self, line: str) -> set[str]:
        """Every version production held through a gated move (a release or a promotion), in one read."""
        with self._read() as s:
            return set(s.execute(select(ChannelMoveRow.to_version).where(
                ChannelMoveRow.line == line, ChannelMoveRow.channel == "production",
                ChannelMoveRow.kind.in_(("release", "promote")))).scalars())

    def held_production(self, line: str, version_id: str) -> bool:
        """:meth:`_held_production` in its own read."""
        with self._read() as s:
            return self._held_production(s, line, version_id)

    def _move_in(self, s: Session, line: str, name: str, version_id: str, *, kind: str, reason: str, actor: str,
                 decision_id: int | None, expected: object = _UNSEEN,
                 extra: dict[str, Any] | None = None, forced: bool = False) -> ChannelMove:
        """One channel move inside the caller's transaction, with its history row and ledger entry: the one
        place a channel pointer changes (releases, rollbacks, and the canary analysis's moves). ``expected``
        is the version the caller saw there (``_UNSEEN``: no compare-and-set); ``extra`` joins the ledger
        payload. The release rule (:meth:`_move_refusal`) is checked here, under the writers' lock."""
        refusal = self._move_refusal(s, line, name, version_id, kind=kind, decision_id=decision_id, forced=forced)
        if refusal is not None:
            err = MoveRefused(refusal)
            err.move = (line, name, version_id)  # type: ignore[attr-defined]
            raise err
        row = s.execute(select(ChannelRow).where(ChannelRow.line == line, ChannelRow.name == name)
                        .with_for_update()).scalar_one_or_none()
        prev = row.version_id if row else None
        if expected is not _UNSEEN and expected != prev:
            raise ConflictError(self._conflict(s, line, name, expected, prev, version_id))  # type: ignore[arg-type]
        if row is None:
            s.add(ChannelRow(line=line, name=name, version_id=version_id, updated_at=utcnow()))
        else:
            row.version_id, row.updated_at = version_id, utcnow()
        move = ChannelMoveRow(line=line, channel=name, from_version=prev, to_version=version_id, kind=kind,
                              reason=reason, actor=actor, decision_id=decision_id, created_at=utcnow())
        s.add(move)
        s.flush()
        ledger_mod.append(s, actor=actor, kind=f"channel.{kind}", subject=f"{line}/{name}", payload={
            "move_id": move.id, "from": prev, "to": version_id, "reason": reason, "decision_id": decision_id,
            **({"forced": True} if forced else {}), **(extra or {})}, key=self.ledger_key)
        return ChannelMove(id=move.id, line=line, channel=name, from_version=prev, to_version=version_id, kind=kind,
                           reason=reason, actor=actor, decision_id=decision_id, created_at=move.created_at)

    @staticmethod
    def _conflict(s: Session, line: str, name: str, saw: str | None, now: str | None, wanted: str) -> str:
        last = s.execute(select(ChannelMoveRow).where(ChannelMoveRow.line == line, ChannelMoveRow.channel == name)
                         .order_by(ChannelMoveRow.id.desc()).limit(1)).scalar_one_or_none()
        by = f" ({last.kind} by {last.actor} at {last.created_at:%Y-%m-%d %H:%M:%S})" if last else ""
        return (f"{line}/{name} changed while this command ran: it pointed at {saw or 'nothing'} when the "
                f"command read it and points at {now or 'nothing'} now{by}. Nothing was moved (not even to "
                f"{wanted}): look at 'loopgate channels {line}' and run the command again if it still applies.")

    def channel_history(self, line: str, name: str | None = None) -> list[ChannelMove]:
        with self._read() as s:
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
        with self._read() as s:
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

    # ------------------------------------------------------------------ garbage collection

    def gc(self, *, keep_latest: int = 1, dry_run: bool = False, actor: str = "loopgate") -> dict[str, Any]:
        """Delete artifact blobs used only by unprotected versions (not on a channel, not a rollback target,
        not among each line's ``keep_latest`` newest). Version records stay; their files become unloadable."""
        keep = self.protected_versions()
        for name, _, _ in self.lines():
            for v in self.versions(name)[-keep_latest:] if keep_latest > 0 else []:
                keep.add(v.id)
        with self._read() as s:
            all_files = list(s.execute(select(VersionFileRow)).scalars())
        kept_shas = {f.sha256 for f in all_files if f.version_id in keep}
        doomed = sorted({f.sha256 for f in all_files if f.sha256 not in kept_shas
                         and self.artifacts.has(f.sha256)})
        collected_versions = sorted({f.version_id for f in all_files if f.sha256 in doomed})
        freed = 0
        if not dry_run and doomed:
            with self._tx() as s:
                ledger_mod.append(s, actor=actor, kind="gc", subject="artifacts",
                                  payload={"blobs": doomed, "versions": collected_versions}, key=self.ledger_key)
            for sha in doomed:  # after the record commits: a crash here leaves blobs, never dangling records
                freed += self.artifacts.delete(sha)
            # copies made for loading must go too, or a collected version would stay loadable from them
            for vid in collected_versions:
                for copy in [self.checkouts_root / vid, *self.merged_dirs(vid)]:
                    shutil.rmtree(copy, ignore_errors=True)
        return {"deleted_blobs": len(doomed), "freed_bytes": freed, "versions": collected_versions,
                "kept_versions": sorted(keep), "dry_run": dry_run}

    # ------------------------------------------------------------------ resumable steps

    def step(self, key: str) -> tuple[str, dict[str, Any] | None] | None:
        with self._read() as s:
            row = s.get(StepRow, key)
            return (row.status, row.result) if row else None

    def set_step(self, key: str, status: str, result: dict[str, Any] | None = None) -> None:
        with self._tx() as s:
            row = s.get(StepRow, key)
            if row is None:
                s.add(StepRow(key=key, status=status, result=result, updated_at=utcnow()))
            else:
                row.status, row.result, row.updated_at = status, result, utcnow()

    def open_steps(self, status: str = "started") -> list[tuple[str, dict[str, Any] | None]]:
        """Steps in ``status``: ``started`` ones were interrupted (or are running); ``failed`` ones hit a user error."""
        with self._read() as s:
            return [(r.key, r.result) for r in s.execute(select(StepRow).where(StepRow.status == status)).scalars()]

    # ------------------------------------------------------------------ ledger

    def record(self, kind: str, subject: str, payload: dict[str, Any], actor: str = "loopgate") -> None:
        """A ledger entry for an event that changes no table (an update started, a rollback cascade note)."""
        with self._tx() as s:
            ledger_mod.append(s, actor=actor, kind=kind, subject=subject, payload=payload, key=self.ledger_key)

    def ledger(self) -> list[LedgerEntry]:
        with self._read() as s:
            return [ledger_mod.to_entry(r) for r in s.execute(select(LedgerRow).order_by(LedgerRow.seq)).scalars()]

    def sign_ledger(self, *, actor: str) -> ledger_mod.SignReport:
        """Sign the entries written without ``LOOPGATE_LEDGER_KEY`` (see ``ledger.sign_unsigned``), and record
        who vouched for them in a ``ledger.sign`` entry, signed like every entry after it."""
        if not self.ledger_key:
            raise LoopgateError("LOOPGATE_LEDGER_KEY is not set: there is no key to sign the ledger with")
        with self._tx() as s:
            report = ledger_mod.sign_unsigned(s, self.ledger_key)
            ledger_mod.append(s, actor=actor, kind="ledger.sign", subject="ledger",
                              payload={"signed": report.signed, "entries": report.entries}, key=self.ledger_key)
        return report

    def verify_state(self) -> list[str]:
        """Every channel, move, decision, approval, token and line pin row that disagrees with the ledger's replay
        (:mod:`loopgate.store.replay`), read on one snapshot."""
        from loopgate.store.replay import state_problems

        with self._sessions(bind=self._snapshot) as s, s.begin():
            problems = state_problems(s)
            for row in s.execute(select(ChannelRow).order_by(ChannelRow.line, ChannelRow.name)).scalars():
                shas = s.execute(select(VersionFileRow.sha256).where(VersionFileRow.version_id == row.version_id))
                if any(not self.artifacts.has(sha) for sha in shas.scalars()):
                    problems.append(f"channel {row.line}/{row.name} points at {row.version_id}, whose files were "
                                    "collected or are missing: it cannot be served")
            return problems

    def verify_ledger(self, *, expect_head: str | None = None) -> ledger_mod.VerifyReport:
        """The hash chain, the head, (with ``LOOPGATE_LEDGER_KEY``) the signatures and (with ``expect_head``) a
        head recorded outside the database, on one snapshot."""
        with self._sessions(bind=self._snapshot) as s, s.begin():
            return ledger_mod.verify(s, self.ledger_key, expect_head=expect_head)


def _aware(t: datetime) -> datetime:
    """SQLite hands timestamps back without their zone (they are stored in UTC)."""

    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the driver's own implicit BEGIN off: _sqlite_begin emits ours
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    """Writers take SQLite's write lock up front (waiting up to busy_timeout); readers read a snapshot. A
    deferred writer that read first would fail with 'database is locked' when it tries to write."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("loopgate_write") else "BEGIN")


def _kill_point(name: str) -> None:
    """``LOOPGATE_KILL_AT=store.before-commit`` kills the process inside a write transaction, after its
    rows are flushed and before it commits (the crash tests; the loop's own kill points are loop/faults.py)."""
    if os.environ.get("LOOPGATE_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)

