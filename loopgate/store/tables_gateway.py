"""Registry tables for the production end: API keys per app, the request log, feedback, canary state (#13).

Created by migration 0003; imported by ``store/db.py`` so they are part of ``Base.metadata``.
"""

from __future__ import annotations

from loopgate.store.base import Base  # noqa: F401
