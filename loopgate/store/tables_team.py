"""Registry tables for team scale: the ledger's anchor in the database, signed entries (#12).

Created by migration 0002; imported by ``store/db.py`` so they are part of ``Base.metadata``.
"""

from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.store.base import Base

HEAD_ID = 1  # the table holds exactly one row


class LedgerHeadRow(Base):
    """The ledger's head (last seq and hash), where every client sees it.

    Every append locks this row (``SELECT ... FOR UPDATE``; SQLite has a single writer), picks the next seq
    and moves the head in the same transaction as the entry, so sequence numbers never clash and a crash
    never leaves the head behind its entries. With ``LOOPGATE_LEDGER_KEY`` set, ``signature`` is an
    HMAC-SHA256 over ``seq:hash``, so the head cannot be moved by someone without the key.
    """

    __tablename__ = "ledger_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(64), nullable=True)
