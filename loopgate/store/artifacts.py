"""Content-addressed artifact store: every file is kept once, under its sha256, and verified on read.

Blobs are read-only (0444). A version's checkout is, as in the Hugging Face cache's snapshots, a folder of
links to its blobs — hard links where the file system allows, symlinks otherwise — so a checkout costs no
bytes and nothing is stored twice. A checkout carries a manifest of each file's sha256 and ``stat`` signature,
written when it is made. Reusing it compares the signatures (cheap) and re-hashes only the files whose
signature changed, so a blob edited on disk (through a link or not) is never loaded as if it were the version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loopgate.errors import ArtifactError
from loopgate.hashing import sha256_file

MANIFEST = ".loopgate-manifest.json"


def _signature(st: os.stat_result) -> list[int]:
    # ctime and inode cannot be set back from user space: an edit that restores size and mtime still shows
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def copy_files(folder: Path) -> list[str]:
    """Relative paths of every file in a loadable copy, except its manifest and temp files."""
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not p.name.startswith(MANIFEST))


def write_manifest(folder: Path, hashes: dict[str, str]) -> None:
    """Record each file's sha256 and current stat signature in ``folder``'s manifest (atomic replace)."""
    folder = Path(folder)
    entries = {rel: {"sha256": sha, "stat": _signature(os.stat(folder / rel))} for rel, sha in sorted(hashes.items())}
    tmp = folder / f"{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"files": entries}, indent=1), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def read_manifest(folder: Path) -> dict[str, str] | None:
    """The sha256 of each file as recorded when the copy was made; None without a readable manifest."""
    entries = _manifest_entries(Path(folder))
    return None if entries is None else {rel: str(e["sha256"]) for rel, e in entries.items()}


def _manifest_entries(folder: Path) -> dict[str, dict[str, Any]] | None:
    try:
        data = json.loads((folder / MANIFEST).read_bytes())
        files = data["files"]
        return {str(rel): {"sha256": str(e["sha256"]), "stat": list(e["stat"])} for rel, e in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def copy_differences(folder: Path, expected: dict[str, str] | None = None, *, full: bool = False) -> list[str]:
    """How a loadable copy differs from ``expected`` (relative path → sha256; default: its own manifest).

    Empty when the copy is intact. A file whose stat signature matches its manifest entry, and that was last
    changed before the manifest was written, is trusted without reading it; any other file is re-hashed
    (every file with ``full=True``). A copy re-hashed clean gets a fresh manifest (except with ``full``), so
    the next check is cheap again (git's rule for its index: a file changed in the same clock tick as the
    manifest could otherwise keep its signature).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is missing"]
    entries = _manifest_entries(folder)
    if expected is None:
        if entries is None:
            return [f"{folder / MANIFEST} is missing or unreadable"]
        expected = {rel: e["sha256"] for rel, e in entries.items()}
    present = copy_files(folder)
    problems = [f"{rel} is missing" for rel in sorted(set(expected) - set(present))]
    problems += [f"{rel} does not belong to it" for rel in present if rel not in expected]
    try:
        manifest_time = os.stat(folder / MANIFEST).st_mtime_ns if entries is not None else 0
    except OSError:
        manifest_time = 0
    rehashed = False
    for rel in sorted(set(expected) & set(present)):
        entry = (entries or {}).get(rel)
        st = os.stat(folder / rel)
        trusted = (not full and entry is not None and entry["sha256"] == expected[rel]
                   and entry["stat"] == _signature(st) and max(st.st_mtime_ns, st.st_ctime_ns) < manifest_time)
        if trusted:
            continue
        rehashed = True
        actual = sha256_file(folder / rel)
        if actual != expected[rel]:
            problems.append(f"{rel} was changed (it hashes to {actual[:12]}, expected {expected[rel][:12]})")
    if rehashed and not problems and not full:  # an audit only reads
        try:
            write_manifest(folder, expected)
        except OSError:
            pass  # a read-only copy stays correct; it is only re-hashed again next time
    return problems


def trusted_hashes(folder: Path) -> dict[str, str]:
    """Each file's sha256 (relative path → hex) from a store copy's manifest when the copy is intact by the rule
    of :func:`copy_differences`, so nothing is read; empty for any folder that is not an intact store copy.
    Keys a checkout's content without re-hashing gigabytes of weights on every evaluation and update."""
    recorded = read_manifest(Path(folder))
    return recorded if recorded and not copy_differences(Path(folder)) else {}


class ArtifactStore:
    """Blobs under ``root/ab/cdef…``; writes are atomic (temp file in the same folder + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def put(self, src: str | Path) -> tuple[str, int]:
        """Store a file; returns (sha256, size). Storing the same content twice is a no-op."""
        src = Path(src)
        dest_dir = self.root / "tmp"
        dest_dir.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            sha = sha256_file(tmp)
            os.chmod(tmp, 0o444)  # stored content is never written again; checkouts link to it
            final = self.path_for(sha)
            if final.exists() and sha256_file(final) == sha:
                os.unlink(tmp)
            else:
                final.parent.mkdir(exist_ok=True)
                os.replace(tmp, final)  # atomic: readers see the old state or the whole new file
            return sha, final.stat().st_size
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def verify(self, sha256: str, owner: str = "") -> Path:
        """The blob's path after checking that its content still hashes to ``sha256``."""
        p = self.path_for(sha256)
        if not p.exists():
            raise self._missing(sha256, owner)
        actual = sha256_file(p)
        if actual != sha256:
            raise self._corrupted(sha256, owner, actual)
        return p

    def _missing(self, sha256: str, owner: str) -> ArtifactError:
        who = f" of {owner}" if owner else ""
        return ArtifactError(f"artifact {sha256[:12]}{who} is missing from {self.root}; restore it from a backup "
                             "or re-register the version")

    @staticmethod
    def _corrupted(sha256: str, owner: str, actual: str) -> ArtifactError:
        who = f" of {owner}" if owner else ""
        return ArtifactError(f"artifact {sha256[:12]}{who} is corrupted (its content hashes to {actual[:12]}); "
                             "restore it from a backup or re-register the version")

    def checkout(self, files: dict[str, str], dest: Path, owner: str = "") -> Path:
        """Link verified blobs into ``dest`` under their file names; built in a temp folder, then renamed.

        An existing checkout is reused only when it holds exactly ``files``, each still a link to its blob and
        unchanged (see :func:`copy_differences`); otherwise it is rebuilt from the blobs.
        """
        dest = Path(dest)
        if dest.exists():
            if not self.unlinked_files(files, dest) and not copy_differences(dest, files):
                return dest
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        try:
            for rel, sha in files.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self._link_verified(sha, target, owner)
            write_manifest(tmp, files)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def unlinked_files(self, files: dict[str, str], folder: Path) -> list[str]:
        """The files of a checkout that are not its blob (a copy, or a link to something else). A file whose blob
        was deleted is not counted: the link still holds the content (checked against the manifest like any other
        file), as a copy did before checkouts were links."""
        out = []
        for rel, sha in files.items():
            blob = self.path_for(sha)
            try:
                if blob.exists() and not os.path.samefile(Path(folder) / rel, blob):
                    out.append(rel)
            except OSError:
                out.append(rel)
        return out

    def _link_verified(self, sha256: str, target: Path, owner: str) -> None:
        """Hash the blob, make it read-only and link it at ``target`` (a hard link, else a symlink)."""
        src = self.verify(sha256, owner)
        if os.stat(src).st_mode & 0o222:
            os.chmod(src, 0o444)  # stored before blobs were made read-only
        try:
            os.link(src, target)
        except OSError:  # another file system, or one without hard links
            os.symlink(src.resolve(), target)

    def delete(self, sha256: str) -> int:
        p = self.path_for(sha256)
        if p.exists():
            size = p.stat().st_size
            p.unlink()
            return size
        return 0
