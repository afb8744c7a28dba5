"""The ``decisions`` and ``approvals`` tables (migration 0001; an approval's ``decision_id`` by 0005)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.store.tables.base import Base


class DecisionRow(Base):
    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id"))
    verdict: Mapped[str] = mapped_column(String(20))
    policy_sha256: Mapped[str] = mapped_column(String(64))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApprovalRow(Base):
    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id"))
    approver: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    overrides: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # the decision this approval approves (migration 0005); None for approvals recorded before it
    decision_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
