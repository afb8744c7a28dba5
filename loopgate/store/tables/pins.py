"""Registry table for pinned lines (#24): a line whose production stays on its parent version however the
parent moves, until someone unpins it.

Created by migration 0007; imported by ``store/tables/__init__.py`` so it is part of ``Base.metadata``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.store.tables.base import Base


class LinePinRow(Base):
    """One pinned line: who pinned it, when and why (an unpin deletes the row; both are in the ledger)."""

    __tablename__ = "line_pins"
    line: Mapped[str] = mapped_column(ForeignKey("lines.name"), primary_key=True)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    # what the line's production served when it was pinned (None: nothing yet)
    production: Mapped[str | None] = mapped_column(String(220), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
