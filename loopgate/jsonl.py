"""JSONL reading shared by suites, update data and lm-eval samples: one JSON object per line, with errors
that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loopgate.errors import DataError


def json_objects(text: str, path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of ``text``; ``DataError`` names ``path:line``."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline) are harmless
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg}); each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj
