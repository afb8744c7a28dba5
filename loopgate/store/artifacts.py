"""Content-addressed artifact store: every file is kept once, under its sha256, and verified on read."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from loopgate.errors import ArtifactError
from loopgate.hashing import sha256_file


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
        who = f" of {owner}" if owner else ""
        p = self.path_for(sha256)
        if not p.exists():
            raise ArtifactError(
                f"artifact {sha256[:12]}{who} is missing from {self.root}; restore it from a backup or "
                "re-register the version"
            )
        actual = sha256_file(p)
        if actual != sha256:
            raise ArtifactError(
                f"artifact {sha256[:12]}{who} is corrupted (its content hashes to {actual[:12]}); "
                "restore it from a backup or re-register the version"
            )
        return p

    def checkout(self, files: dict[str, str], dest: Path, owner: str = "") -> Path:
        """Copy verified blobs to ``dest`` under their file names; built in a temp folder, then renamed."""
        dest = Path(dest)
        if dest.exists():
            # an existing checkout may have been edited by hand: verify it matches before reuse
            if all((dest / rel).exists() and sha256_file(dest / rel) == sha for rel, sha in files.items()):
                return dest
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        try:
            for rel, sha in files.items():
                src = self.verify(sha, owner)
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def delete(self, sha256: str) -> int:
        p = self.path_for(sha256)
        if p.exists():
            size = p.stat().st_size
            p.unlink()
            return size
        return 0
