"""Registry tables for the control plane: bearer tokens with roles (#14).

Created by migration 0004; imported by ``store/db.py`` so they are part of ``Base.metadata``.
"""

from __future__ import annotations

from loopgate.store.base import Base  # noqa: F401
