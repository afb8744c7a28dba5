"""The fuzz suite's report: how many generated inputs each surface tried, how many known failures (the test
module's KNOWN) each entry still covers, and the shapes of the REST API's refusals — printed at the end of every
run (``make test`` included), so a reader sees the suite's reach without ``-s``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest


@dataclass
class FuzzReport:
    inputs: Counter[str] = field(default_factory=Counter)  # surface -> inputs tried
    known: dict[tuple[str, str], int] = field(default_factory=dict)  # KNOWN entry -> failing inputs it covered
    shapes: Counter[str] = field(default_factory=Counter)  # the REST API's answers: "422 fastapi", "404 loopgate"


REPORT = FuzzReport()


@pytest.fixture
def fuzz_report() -> FuzzReport:
    return REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.inputs:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fuzz")
    for surface, n in sorted(REPORT.inputs.items()):
        write(f"fuzz: {surface}: {n} inputs")
    known = sum(REPORT.known.values())
    write(f"fuzz: {sum(REPORT.inputs.values())} inputs, {known} of them known failures (KNOWN, reported); "
          "any other failure fails its test above")
    for (surface, piece), n in sorted(REPORT.known.items()):
        write(f"fuzz: known [{surface}] {piece!r}: " + (f"{n} inputs still fail" if n else
                                                          "no input fails any more: remove it from KNOWN"))
    if REPORT.shapes:
        write("fuzz: rest api answers: " + ", ".join(f"{k} ×{n}" for k, n in sorted(REPORT.shapes.items())))
