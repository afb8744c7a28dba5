"""JSONL reading shared by suites, update data and lm-eval samples: one JSON object per line, with errors
that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loopgate.errors import DataError


def read_text(path: Path | str, what: str = "JSONL file") -> str:
    """The file's text, decoded as UTF-8 (a leading BOM is dropped); a ``DataError`` naming the file when it is
    missing, unreadable or not text (a binary file, another encoding)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file; check the path")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise DataError(f"{p}: cannot be read ({err.strerror}); check its permissions") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{p}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); a {what} holds one JSON "
            "object per line in UTF-8 — is this the right file, or was it saved in another encoding?"
        ) from None


def read_jsonl(path: Path | str, what: str = "JSONL file") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of the file at ``path``; errors name ``path:line``."""
    return json_objects(read_text(path, what), path)


def json_objects(text: str, path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of ``text``; ``DataError`` names ``path:line``."""
    # split on "\n" only: str.splitlines() also breaks at U+2028, U+0085 and other characters that JSON
    # allows raw inside a string, which would cut a valid row in two
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline) are harmless
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg}); each line must be one JSON object") from None
        except RecursionError:
            raise DataError(f"{path}:{lineno}: JSON nested too deeply to read") from None
        except ValueError as err:  # e.g. an integer of more than 4300 digits (Python's conversion limit)
            raise DataError(f"{path}:{lineno}: a value cannot be read ({err}); each line must be one JSON "
                            "object of ordinary values") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj
