"""The registry: one interface over lines, versions, artifacts, evaluations, decisions, channels,
approvals, loop steps and the ledger (MLflow-style: the rest of the code never writes SQL).

:class:`Store` is a thin facade composed of one repository per entity (``versions.py``, ``evaluations.py``,
``decisions.py``, ``channels.py``, ``steps.py``, ``ledger_repo.py``, ``files.py``), all over one
:class:`~loopgate.store.session.Database`; the production end's and the control plane's repositories
(``gateway.py``, ``tokens.py``, ``pins.py``, ``pages.py``, ``release_reads.py``) are functions of a store that
use the same database. Every write runs in one transaction together with its ledger entry, so a crash leaves
either both or neither.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from loopgate.store import tables as _tables  # noqa: F401 — every table in Base.metadata before any query
from loopgate.store.artifacts import ArtifactStore
from loopgate.store.decisions import Approval, DecisionRepository
from loopgate.store.evaluations import EvaluationRepository
from loopgate.store.files import ArtifactHit, ArtifactReport, FileRepository
from loopgate.store.migrate import MIGRATIONS, adopt_file_anchor, migrate
from loopgate.store.moves import CHANNELS, ChannelMove
from loopgate.store.session import Database
from loopgate.store.steps import StepRepository
from loopgate.store.versions import VersionInfo, VersionLink, parse_version_id

__all__ = [
    "CHANNELS", "MIGRATIONS", "Approval", "ArtifactHit", "ArtifactReport", "ChannelMove", "Store", "VersionInfo",
    "VersionLink", "parse_version_id",
]


class Store(FileRepository, DecisionRepository, EvaluationRepository, StepRepository):
    """The registry of one workspace: ``<workspace>/.loopgate`` (SQLite, WAL) or a database URL."""

    def __init__(self, home: str | Path, url: str | None = None) -> None:
        home = Path(home)
        home.mkdir(parents=True, exist_ok=True)
        url = url or os.environ.get("LOOPGATE_DATABASE_URL") or f"sqlite:///{home / 'registry.db'}"
        db = Database(url, os.environ.get("LOOPGATE_LEDGER_KEY") or None)
        super().__init__(db, ArtifactStore(home / "artifacts"), home)
        migrate(db)
        adopt_file_anchor(db, home)

    @property
    def url(self) -> str:
        return self.db.url

    @property
    def engine(self) -> Engine:
        return self.db.engine

    @property
    def ledger_key(self) -> str | None:
        return self.db.ledger_key

    def close(self) -> None:
        self.db.close()

    # the tests' way in to write behind the repositories (a forged row, an append from another module)
    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self.db.tx() as s:
            yield s

    def _sessions(self) -> Session:
        return self.db.read()
