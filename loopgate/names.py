"""Names of lines and suites: one pattern, shared by the spec, the CLI and the API.

A name ends up in version ids (``LINE@3``), URLs, file paths under ``.loopgate/`` and log lines, so it is
kept to letters, digits, ``-`` and ``_``: 1 to 64 characters, starting with a letter or a digit. That rules
out path tricks (``../../x``), empty names, control characters (NUL) and names no one can type.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from loopgate.errors import SpecError

LINE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
LINE_NAME_RE = re.compile(LINE_NAME_PATTERN)
NAME_RULE = "1 to 64 letters, digits, '-' or '_', starting with a letter or a digit"


def is_line_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` is a valid line (or suite) name."""
    return isinstance(name, str) and LINE_NAME_RE.fullmatch(name) is not None


def check_line_name(name: object, what: str = "line") -> str:
    """``name`` itself when it is a valid line (or suite) name, else a ``SpecError`` that names it and the rule."""
    if is_line_name(name):
        return name
    shown = repr(name) if not isinstance(name, str) or len(name) <= 80 else repr(name[:80]) + f"… ({len(name)} chars)"
    raise SpecError(f"{what} name {shown} is not valid: use {NAME_RULE}")
