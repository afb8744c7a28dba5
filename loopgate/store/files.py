"""The repository of a version's stored files and the folders the store owns under its home: loadable
checkouts, scratch and cache folders, the full artifact audit and garbage collection.

Everything Loopgate writes under its home is named here, so gc and the audit find it by these methods and no
other layer builds a path under the home by convention.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from loopgate.errors import ArtifactError
from loopgate.hashing import sha256_file
from loopgate.store import ledger as ledger_mod
from loopgate.store.artifacts import MANIFEST, copy_differences
from loopgate.store.channels import ChannelRepository
from loopgate.store.tables import LedgerRow, VersionFileRow, VersionRow
from loopgate.store.versions import VersionRepository


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


class FileRepository(VersionRepository, ChannelRepository):
    """Versions' files on disk: what loads them, what audits them, what collects them."""

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
        with self.db.read() as s:
            files = [(f.version_id, f.path, f.sha256) for f in s.execute(select(VersionFileRow)).scalars()]
            data = [(vid, list(shas)) for vid, shas in s.execute(select(VersionRow.id, VersionRow.data_sha256))]
            collected = {sha for row in s.execute(select(LedgerRow).where(LedgerRow.kind == "gc")).scalars()
                         for sha in ledger_mod.to_entry(row).payload.get("blobs", [])}
        wanted = sorted({sha for _, _, sha in files} | {sha for _, shas in data for sha in shas})
        found = self._blob_states(wanted, workers)
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
        copies = self._copy_hits(by_version, hits)
        hits.sort(key=lambda h: (h.version, h.what, h.file))
        return ArtifactReport(ok=not hits, versions=len({vid for vid, _ in data}), blobs=len(wanted),
                              bytes=sum(size for _, size in found.values()), copies=copies, collected=gone,
                              hits=hits)

    def _blob_states(self, wanted: list[str], workers: int | None) -> dict[str, tuple[str, int]]:
        """Each blob's problem ("" when intact) and size, hashed in parallel."""
        def status(sha: str) -> tuple[str, int]:
            p = self.artifacts.path_for(sha)
            if not p.exists():
                return "missing", 0
            actual = sha256_file(p)  # hashlib releases the GIL: threads hash blobs in parallel
            return ("" if actual == sha else f"corrupted: its content hashes to {actual[:12]}"), p.stat().st_size

        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            return dict(zip(wanted, pool.map(status, wanted), strict=True))

    def _copy_hits(self, by_version: dict[str, dict[str, str]], hits: list[ArtifactHit]) -> int:
        """Check every checkout and merged copy, appending what differs to ``hits``; returns how many copies."""
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
        return copies

    def gc(self, *, keep_latest: int = 1, dry_run: bool = False, actor: str = "loopgate") -> dict[str, Any]:
        """Delete artifact blobs used only by unprotected versions (not on a channel, not a rollback target,
        not among each line's ``keep_latest`` newest). Version records stay; their files become unloadable."""
        keep = self.protected_versions()
        for name, _, _ in self.lines():
            for v in self.versions(name)[-keep_latest:] if keep_latest > 0 else []:
                keep.add(v.id)
        with self.db.read() as s:
            all_files = list(s.execute(select(VersionFileRow)).scalars())
        kept_shas = {f.sha256 for f in all_files if f.version_id in keep}
        doomed = sorted({f.sha256 for f in all_files if f.sha256 not in kept_shas
                         and self.artifacts.has(f.sha256)})
        collected_versions = sorted({f.version_id for f in all_files if f.sha256 in doomed})
        freed = 0
        if not dry_run and doomed:
            with self.db.tx() as s:
                ledger_mod.append(s, actor=actor, kind="gc", subject="artifacts",
                                  payload={"blobs": doomed, "versions": collected_versions},
                                  key=self.db.ledger_key)
            for sha in doomed:  # after the record commits: a crash here leaves blobs, never dangling records
                freed += self.artifacts.delete(sha)
            # copies made for loading must go too, or a collected version would stay loadable from them
            for vid in collected_versions:
                for copy in [self.checkouts_root / vid, *self.merged_dirs(vid)]:
                    shutil.rmtree(copy, ignore_errors=True)
        return {"deleted_blobs": len(doomed), "freed_bytes": freed, "versions": collected_versions,
                "kept_versions": sorted(keep), "dry_run": dry_run}
