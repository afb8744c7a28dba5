"""The ``evaluations`` table (migration 0001)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.store.tables.base import Base


class EvaluationRow(Base):
    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("version_id", "suite_sha256", name="uq_evaluations_version_suite"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id"))
    suite: Mapped[str] = mapped_column(String(200))
    suite_sha256: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)  # as in migration 0001 (SQLAlchemy 2.1 would map float to Double)
    n: Mapped[int] = mapped_column(Integer)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)  # the full Evaluation, per-example outcomes included
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
