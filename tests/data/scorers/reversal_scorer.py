"""A team's own scorer for the reversal suites (``scorer: python``): the reversed word must be one of the answer's
words, whatever else the answer says; a wrong answer earns partial credit for how close its nearest word is."""

from __future__ import annotations

import difflib
import re
from typing import Any


def reversed_word(prompt: str, output: str, row: dict[str, Any]) -> float:
    """1.0 when the row's target is a word of the output, else half the similarity of the closest word."""
    target = str(row["target"])
    words = re.findall(r"[a-z]+", output.lower())
    if target in words:
        return 1.0
    return 0.5 * max((difflib.SequenceMatcher(None, target, w).ratio() for w in words), default=0.0) * 0.99


def broken(prompt: str, output: str, row: dict[str, Any]) -> float:
    """Fails on one row, as a team's half-finished scorer would."""
    if row["id"] == "w3":
        raise KeyError("rubric")
    return 1.0


def out_of_range(prompt: str, output: str, row: dict[str, Any]) -> float:
    """Returns a score outside [0, 1]."""
    return 7.0
