"""loop/evaluation.py: which suites a line answers to — its own, its apps', and its ancestors'."""

from __future__ import annotations

from typing import Any

from loopgate.loop.evaluation import line_suites, load_suites


def test_a_line_answers_to_its_own_suites_and_inherits_its_ancestors(workspace: Any) -> None:
    assert line_suites(workspace, "support") == (["reversal"], [])
    assert line_suites(workspace, "billing") == ([], ["reversal"])
    assert line_suites(workspace, "base") == ([], [])


def test_a_suite_loads_from_its_file(workspace: Any) -> None:
    (workspace.root / "suites").mkdir(exist_ok=True)
    (workspace.root / "suites/reversal.jsonl").write_text('{"id": "a", "prompt": "abc", "target": "cba"}\n',
                                                           encoding="utf-8")
    [suite] = load_suites(workspace, ["reversal"])
    assert suite.name == "reversal" and [r.id for r in suite.rows] == ["a"]
