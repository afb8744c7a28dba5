"""The ledger's tables: its entries (``ledger``, migration 0001; ``signature`` by 0002, the kind/subject index by
0005) and its head, the anchor in the database (``ledger_head``, migration 0002). Entries are immutable."""

from __future__ import annotations

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from loopgate.store.tables.base import Base, immutable

HEAD_ID = 1  # the head table holds exactly one row


@immutable
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
