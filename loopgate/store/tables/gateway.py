"""Registry tables for the production end: API keys per app, the request log, feedback, canary state (#13).

Created by migration 0003 (``key_id`` and ``counted`` by 0006, ``seed`` by 0008); imported by
``store/tables/__init__.py`` so they are part of ``Base.metadata``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.store.tables.base import Base


class GatewayKeyRow(Base):
    """An API key of one app (or model line); only its sha256 is kept, the key itself is shown once."""

    __tablename__ = "gateway_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(ForeignKey("lines.name"))
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class GatewayRequestRow(Base):
    """One answered (or failed) request: who answered it and what it cost."""

    __tablename__ = "gateway_requests"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    app: Mapped[str | None] = mapped_column(String(200), nullable=True)
    line: Mapped[str] = mapped_column(String(200), index=True)
    version_id: Mapped[str] = mapped_column(String(220), index=True)
    channel: Mapped[str] = mapped_column(String(40))
    shadow: Mapped[bool] = mapped_column(Boolean)  # a shadow answer: computed, logged, never returned
    user_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the API key that asked (None: keys off)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)  # per policy canary.log_text
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the sampling seed the answer used (returned to the client as ``seed``), to reproduce it; None: greedy
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeedbackRow(Base):
    """A user's score of one answer, joined to the version that gave it. Rows are only appended: an answer rated
    again keeps every rating, and the latest one is the answer's rating (the ledger holds them all too)."""

    __tablename__ = "gateway_feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("gateway_requests.id"), index=True)
    version_id: Mapped[str] = mapped_column(String(220), index=True)
    score: Mapped[float] = mapped_column(Float)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # the key that rated
    # whether the canary analysis counts it: false once its key has used its share on the version (per-key cap)
    counted: Mapped[bool] = mapped_column(Boolean, server_default=true())
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CanaryCheckRow(Base):
    """One canary analysis measurement: its verdict, the running count of consecutive failures, the evidence."""

    __tablename__ = "canary_checks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    line: Mapped[str] = mapped_column(String(200), index=True)
    canary_version: Mapped[str] = mapped_column(String(220), index=True)
    production_version: Mapped[str] = mapped_column(String(220))
    verdict: Mapped[str] = mapped_column(String(20))  # this measurement: pass | fail | inconclusive
    outcome: Mapped[str] = mapped_column(String(20))  # watching | promoted | rolled_back | passed
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
