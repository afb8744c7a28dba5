"""The ``steps`` table: resumable loop steps (migration 0001)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.store.tables.base import Base


class StepRow(Base):
    """A loop step's state, recorded before and after it runs, so a killed run resumes where it stopped."""

    __tablename__ = "steps"
    key: Mapped[str] = mapped_column(String(500), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # started | done
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
