"""The fuzz suite's tally: how many generated inputs each surface tried, printed at the end of every run
(``make test`` included), so a reader sees the suite's reach without ``-s``."""

from __future__ import annotations

from collections import Counter

import pytest

TALLY: Counter[str] = Counter()


@pytest.fixture
def tally() -> Counter[str]:
    """Inputs tried per surface; a test adds to it as it goes."""
    return TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    terminalreporter.section("fuzz")
    for surface, n in sorted(TALLY.items()):
        if surface == "known, skipped":
            continue
        terminalreporter.write_line(f"fuzz: {surface}: {n} inputs")
    tried = sum(n for s, n in TALLY.items() if s != "known, skipped")
    terminalreporter.write_line(f"fuzz: {TALLY['known, skipped']} known failing inputs skipped (KNOWN, reported)")
    terminalreporter.write_line(f"fuzz: {tried} inputs in total, each a clean refusal or answer "
                                "(failures above name any that were not)")
