"""The evaluation cache, keyed by content: (model bytes, suite bytes + scorer config, engine code hash).

Unlike lm-evaluation-harness (whose cache key leaves out the model, its issue #4063) or a cache keyed by
a model *name*, the key here hashes the weights themselves, so two checkpoints never share a result and a
single changed weight byte is a miss. Entries are one JSON file each, written atomically, so concurrent
processes can share a cache folder: the worst case is two processes computing the same entry once each.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from loopgate.evaluate.engine import engine_version
from loopgate.evaluate.suites import Suite, scorer_config
from loopgate.hashing import sha256_file, sha256_json
from loopgate.models import model_files
from loopgate.records import Evaluation
from loopgate.store import trusted_hashes


def directory_model_key(model_dir: str | Path, adapter_dir: str | Path | None = None) -> str:
    """sha256 over every model (and adapter) file's relative path and content hash.

    A version's checkout is not read: its manifest's hashes are used while its files keep the stat signatures
    they were checked out with (``trusted_hashes``), so evaluating an 8 B version does not hash 16 GB first.
    """
    parts: dict[str, dict[str, str]] = {}
    for label, folder in (("model", model_dir), ("adapter", adapter_dir)):
        if folder is None:
            continue
        root = Path(folder)
        known = trusted_hashes(root)
        parts[label] = {rel: known.get(rel) or sha256_file(p)
                        for rel, p in ((p.relative_to(root).as_posix(), p) for p in model_files(root))}
    return sha256_json(parts)


def cache_key(model_key: str, suite: Suite, *, engine: str | None = None) -> str:
    """The content key of one (model, suite) evaluation; ``engine`` defaults to this process's ``engine_version()``."""
    return sha256_json({
        "model": model_key,
        "suite": suite.sha256,
        "scorer": scorer_config(suite.spec),
        "engine": engine if engine is not None else engine_version(),
    })


class EvaluationCache:
    """One JSON file per key under ``root`` (sharded by the key's first two hex digits)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str, *, version: str | None = None) -> Evaluation | None:
        """The cached evaluation, re-labelled with ``version``; None on a miss or an unreadable entry."""
        path = self._path(key)
        try:
            ev = Evaluation.model_validate_json(path.read_bytes())
        except (FileNotFoundError, ValidationError, ValueError):
            # a truncated or foreign file is a miss, and the next put() replaces it
            return None
        if ev.cache_key != key:
            return None
        return ev.model_copy(update={"version": version}) if version is not None else ev

    def put(self, key: str, evaluation: Evaluation) -> Evaluation:
        """Store ``evaluation`` under ``key`` atomically (temp file + ``os.replace``); returns it with its key."""
        ev = evaluation.model_copy(update={"cache_key": key})
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(ev.model_dump_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ev

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()
