"""The ``channels`` table (where each line's channels point) and its history, ``channel_moves`` (migration
0001)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.store.tables.base import Base


class ChannelRow(Base):
    __tablename__ = "channels"
    line: Mapped[str] = mapped_column(ForeignKey("lines.name"), primary_key=True)
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChannelMoveRow(Base):
    __tablename__ = "channel_moves"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    line: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(40))
    from_version: Mapped[str | None] = mapped_column(String(220), nullable=True)
    to_version: Mapped[str] = mapped_column(String(220))
    kind: Mapped[str] = mapped_column(String(20))  # release | promote | rollback
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    decision_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
