"""The repository of resumable loop steps: a step's state is recorded before and after it runs, so a killed run
resumes where it stopped."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from loopgate.records import utcnow
from loopgate.store.session import Repository
from loopgate.store.tables import StepRow


class StepRepository(Repository):
    def step(self, key: str) -> tuple[str, dict[str, Any] | None] | None:
        with self.db.read() as s:
            row = s.get(StepRow, key)
            return (row.status, row.result) if row else None

    def set_step(self, key: str, status: str, result: dict[str, Any] | None = None) -> None:
        with self.db.tx() as s:
            row = s.get(StepRow, key)
            if row is None:
                s.add(StepRow(key=key, status=status, result=result, updated_at=utcnow()))
            else:
                row.status, row.result, row.updated_at = status, result, utcnow()

    def open_steps(self, status: str = "started") -> list[tuple[str, dict[str, Any] | None]]:
        """Steps in ``status``: ``started`` ones were interrupted (or are running); ``failed`` ones hit a user error."""
        with self.db.read() as s:
            return [(r.key, r.result) for r in s.execute(select(StepRow).where(StepRow.status == status)).scalars()]
