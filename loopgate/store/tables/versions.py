"""The tables of versions: ``versions``, their files and the content-addressed ``artifacts`` they point at
(migration 0001). Versions and their files are immutable once written."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.store.tables.base import Base, immutable


@immutable
class VersionRow(Base):
    """An immutable snapshot of a line."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("line", "number", name="uq_versions_line_number"),)
    id: Mapped[str] = mapped_column(String(220), primary_key=True)
    line: Mapped[str] = mapped_column(ForeignKey("lines.name"))
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # full | adapter
    source: Mapped[str] = mapped_column(String(20))  # register | update | transfer
    parent_version: Mapped[str | None] = mapped_column(String(220), nullable=True)
    base_version: Mapped[str | None] = mapped_column(String(220), nullable=True)
    recipe: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    data_sha256: Mapped[list[str]] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@immutable
class VersionFileRow(Base):
    __tablename__ = "version_files"
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(500), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("artifacts.sha256"))


class ArtifactRow(Base):
    __tablename__ = "artifacts"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
