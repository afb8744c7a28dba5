"""Registry tables for team scale: the ledger's anchor in the database, signed entries (#12).

Created by migration 0002; imported by ``store/db.py`` so they are part of ``Base.metadata``.
"""

from __future__ import annotations

from loopgate.store.base import Base  # noqa: F401
