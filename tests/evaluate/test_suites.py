"""Suite loading: validation messages, ids and content identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_helpers import write_jsonl

from loopgate.errors import DataError
from loopgate.evaluate.suites import ChoiceRow, GenerationRow, SafetyRow, load_suite
from loopgate.spec import SuiteSpec


def test_rows_ids_default_to_the_row_index(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "s.jsonl", [{"prompt": "a", "target": "b"}, {"id": "x7", "prompt": "c", "target": "d"},
                                       {"prompt": "e", "target": "f"}])
    suite = load_suite("s", SuiteSpec(path="s.jsonl"), tmp_path)
    assert [r.id for r in suite.rows] == ["0", "x7", "2"]
    assert suite.rows[1] == GenerationRow(id="x7", prompt="c", target="d")
    assert len(suite) == 3 and suite.kind == "generation"


def test_each_kind_parses_its_fields(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "c.jsonl", [{"prompt": "p", "choices": ["a", "b"], "label": 1}])
    write_jsonl(tmp_path / "h.jsonl", [{"prompt": "p", "expect": "refuse", "category": "weapons"}])
    choice = load_suite("c", SuiteSpec(path="c.jsonl", kind="choice"), tmp_path)
    safety = load_suite("h", SuiteSpec(path=str(tmp_path / "h.jsonl"), kind="safety"))  # absolute path
    assert choice.rows == (ChoiceRow(id="0", prompt="p", choices=("a", "b"), label=1),)
    assert safety.rows == (SafetyRow(id="0", prompt="p", expect="refuse", category="weapons"),)


@pytest.mark.parametrize(("kind", "lines", "message"), [
    ("generation", ['{"prompt": "a", "target": "b"}', '{"prompt": "a"}'], "s.jsonl:2: missing field 'target'"),
    ("generation", ['{"prompt": "a", "target": "b"}', "", '{"prompt": "a",'], "s.jsonl:3: not valid JSON"),
    ("generation", ['["a", "b"]'], "s.jsonl:1: expected a JSON object"),
    ("generation", ['{"prompt": 3, "target": "b"}'], "field 'prompt' must be str"),
    ("generation", ['{"id": 1, "prompt": "a", "target": "b"}', '{"id": "1", "prompt": "a", "target": "b"}'],
     "duplicate id '1'"),
    ("choice", ['{"prompt": "a", "choices": ["x", "y"]}'], "s.jsonl:1: missing field 'label'"),
    ("choice", ['{"prompt": "a", "choices": ["x", "y"], "label": 2}'], "'label' is 2 but there are 2 choices"),
    ("choice", ['{"prompt": "a", "choices": ["x", "y"], "label": true}'], "field 'label' must be int"),
    ("choice", ['{"prompt": "a", "choices": ["x"], "label": 0}'], "at least two strings"),
    ("safety", ['{"prompt": "a", "expect": "maybe"}'], "'expect' must be 'refuse' or 'comply'"),
    ("safety", ['{"prompt": "a"}'], "s.jsonl:1: missing field 'expect'"),
])
def test_malformed_rows_name_file_line_and_field(tmp_path: Path, kind: str, lines: list[str], message: str) -> None:
    (tmp_path / "s.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_suite("s", SuiteSpec(path="s.jsonl", kind=kind), tmp_path)  # type: ignore[arg-type]


def test_missing_or_empty_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_suite("s", SuiteSpec(path="nope.jsonl"), tmp_path)
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        load_suite("e", SuiteSpec(path="e.jsonl"), tmp_path)


def test_identity_follows_content_and_scorer_config_not_the_path(tmp_path: Path) -> None:
    rows = [{"prompt": "a", "target": "b"}]
    write_jsonl(tmp_path / "one.jsonl", rows)
    write_jsonl(tmp_path / "two.jsonl", rows)
    base = load_suite("s", SuiteSpec(path="one.jsonl"), tmp_path).sha256
    assert load_suite("s", SuiteSpec(path="two.jsonl", train_path="t.jsonl"), tmp_path).sha256 == base
    assert load_suite("s", SuiteSpec(path="one.jsonl", normalize=False), tmp_path).sha256 != base
    assert load_suite("s", SuiteSpec(path="one.jsonl", stop=["."]), tmp_path).sha256 != base
    write_jsonl(tmp_path / "two.jsonl", [{"prompt": "a", "target": "c"}])
    assert load_suite("s", SuiteSpec(path="two.jsonl"), tmp_path).sha256 != base
