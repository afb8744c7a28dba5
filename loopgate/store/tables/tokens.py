"""Registry tables for the control plane: bearer tokens with roles (#14).

Created by migration 0004; imported by ``store/tables/__init__.py`` so they are part of ``Base.metadata``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.store.tables.base import Base


class TokenRow(Base):
    """A bearer token of the REST API and the dashboard: only its sha256 is kept, never the token itself."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))  # the identity the token acts as (recorded as the actor)
    role: Mapped[str] = mapped_column(String(20))  # viewer | releaser | approver | admin
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to recognise a token in a list
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
