"""Registry tables (SQLAlchemy 2 ORM). Portable SQL only: SQLite by default, PostgreSQL for teams.

The schema is created and evolved by the Alembic migrations in ``store/migrations``; these classes are
the ORM's view of it, and a test checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.errors import ImmutableError
from loopgate.store.base import Base


class LineRow(Base):
    __tablename__ = "lines"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    tier: Mapped[str] = mapped_column(String(20))
    parent: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


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


class DecisionRow(Base):
    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id"))
    verdict: Mapped[str] = mapped_column(String(20))
    policy_sha256: Mapped[str] = mapped_column(String(64))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


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


class StepRow(Base):
    """A loop step's state, recorded before and after it runs, so a killed run resumes where it stopped."""

    __tablename__ = "steps"
    key: Mapped[str] = mapped_column(String(500), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # started | done
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LedgerRow(Base):
    __tablename__ = "ledger"
    __table_args__ = (Index("ix_ledger_kind_subject", "kind", "subject"),)  # migration 0005
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(300))
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON, stored as text so the hashed bytes are kept
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # HMAC-SHA256 of ``hash`` under LOOPGATE_LEDGER_KEY (migration 0002); None when written without a key
    signature: Mapped[str | None] = mapped_column(String(64), nullable=True)


def _refuse_update(mapper: Any, connection: Any, target: Any) -> None:
    raise ImmutableError(
        f"{type(target).__tablename__} records are immutable once written; create a new version instead"
    )


# versions, their files and ledger entries never change once written (the ORM refuses; the ledger chain
# detects edits made behind its back)
for _cls in (VersionRow, VersionFileRow, LedgerRow):
    event.listen(_cls, "before_update", _refuse_update)


# Tables of later concerns live in their own modules (each imports Base from store/base.py); importing them
# here puts every table in Base.metadata, which the migrations are checked against.
from loopgate.store import tables_control, tables_gateway, tables_pins, tables_team  # noqa: E402, F401
