"""What the CLI prints for people: the gate table names overrides and approvers, and nothing is cut at the
terminal's width (COLUMNS=80, output piped: every character of a long reason and version id is printed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loopgate.gates.context import ApprovalRecord
from loopgate.gates.policy import decide
from loopgate.loop.outcomes import ReleaseOutcome
from loopgate.spec import Policy
from tests.gates.gate_helpers import context, ev, right_wrong

LONG_VERSION = "support-with-a-very-long-line-name-for-the-terminal@12"
REASON = ("accepted after reading the flips by hand: the 'regression' on faq is a relabelled answer key "
          "https://tickets.example.com/incident/2024-0042/regression-override-justification-document")

PRINT = """
import sys
from loopgate.cli.release import _print_release
from loopgate.loop.outcomes import ReleaseOutcome
_print_release(ReleaseOutcome.model_validate_json(sys.stdin.read()))
"""


def _outcome() -> ReleaseOutcome:
    """A real decision: regression inconclusive (8 flips of 40, the interval reaches the tolerance), overridden by
    bob with a long reason, approved by bob and carol."""
    policy = Policy.model_validate({"approval": {"approvers": 2},
                                    "regression": {"tolerance": 0.1, "max_negative_flip_rate": 1.0}})
    ctx = context(candidate=LONG_VERSION, owned_suites=["faq"],
                  candidate_evals={"faq": ev("faq", right_wrong(40, range(8)), LONG_VERSION)},
                  baselines={"production": "support@11"},
                  baseline_evals={"production": {"faq": ev("faq", right_wrong(40), "support@11")}},
                  approvals=[ApprovalRecord(approver="bob", reason=REASON, overrides=["regression"]),
                             ApprovalRecord(approver="carol", reason="ok")])
    d = decide(ctx, policy, only=["regression", "approval"])
    assert d.verdict.value == "pass" and d.gates[0].overridden_by  # the override counted
    return ReleaseOutcome(version=LONG_VERSION, decision=d, released=True)


def _printed(o: ReleaseOutcome, columns: int) -> str:
    env = {**os.environ, "COLUMNS": str(columns)}
    res = subprocess.run([sys.executable, "-c", PRINT], input=o.model_dump_json(), capture_output=True, text=True,
                         env=env, cwd=Path(__file__).resolve().parents[1], timeout=120, check=True)
    return res.stdout


def _squeezed(text: str) -> str:
    """The text without table borders and whitespace: what wrapping may move, never what it may drop."""
    return "".join(c for c in text if not c.isspace() and c not in "│┃┏┓┗┛┡┩└┘┌┐━─╇╈╋┳┻┣┫├┤┼┯┷╀╁╃╄╅╆╉╊╌╍")


def _column(text: str, index: int) -> str:
    """One column of the printed table, its wrapped cells read top to bottom."""
    rows = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    return "".join(r[index + 1] for r in rows if len(r) > index + 1)


def test_gate_table_names_overrides_and_approvers_in_80_columns() -> None:
    text = _printed(_outcome(), 80)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "…" not in text, text  # nothing truncated with an ellipsis
    flat = _squeezed(text)
    overrides = _squeezed(_column(text, 4))
    assert _squeezed(f"bob: {REASON}") in overrides, text  # who overrode, and every character of why
    assert LONG_VERSION in flat
    assert "approved by bob, carol (2/2 required)" in text, text
    assert "overriddenby" in flat  # the column


def test_the_interval_not_mcnemar_is_named_in_the_table() -> None:
    summaries = _squeezed(_column(_printed(_outcome(), 80), 3))
    assert "theintervaldecided" in summaries and "notsignificant" not in summaries
