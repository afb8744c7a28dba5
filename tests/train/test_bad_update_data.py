"""Update data that no tokenizer can take, or that is not JSONL of the method's shape, is a ``DataError`` naming the
file and the line before any training: a lone surrogate (JSON's ``\\ud800`` escape), bytes that are not UTF-8, a
line that is not JSON, a missing field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopgate.errors import DataError
from loopgate.spec import Recipe
from loopgate.train import run_update
from loopgate.train.data import load_rows

GOOD = '{"prompt": "abc ->", "completion": "cba"}\n'


def write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case, body, match", [
    ("surrogate", GOOD + '{"prompt": "abc ->", "completion": "c\\ud800a"}\n',
     r":2: field 'completion' holds a lone surrogate \('\\ud800' at character 1\)"),
    ("surrogate-in-messages", GOOD + GOOD + '{"messages": [{"role": "user", "content": "\\udfff"}, '
                                            '{"role": "assistant", "content": "x"}]}\n',
     r":3: field 'messages\[0\]\.content' holds a lone surrogate"),
    ("surrogate-in-a-key", '{"prompt": "a", "completion": "b", "\\ud800": 1}\n', r":1: a key holds a lone surrogate"),
    ("latin-1", GOOD.encode() + GOOD.encode() + '{"prompt": "café", "completion": "x"}\n'.encode("latin-1"),
     r":3: not UTF-8 text \(byte 0xe9\)"),
    ("not-json", GOOD + "prompt: abc\n", r":2: not valid JSON"),
    ("missing-field", GOOD + '{"prompt": "abc"}\n', r":2: missing field 'completion'"),
])
def test_bad_rows_name_the_file_and_line(case: str, body: str | bytes, match: str, tmp_path: Path) -> None:
    path = write(tmp_path / f"{case}.jsonl", body)
    with pytest.raises(DataError, match=str(path).replace(".", r"\.") + match):
        load_rows(path, "sft")
    if case.startswith("surrogate"):  # replay files are read without a method's shape: checked the same
        with pytest.raises(DataError, match="lone surrogate"):
            load_rows(path)


def test_a_bom_and_paired_surrogates_are_fine(tmp_path: Path) -> None:
    paired = b'{"prompt": "\\ud83d\\ude00", "completion": "x"}\n'
    path = write(tmp_path / "ok.jsonl", b"\xef\xbb\xbf" + GOOD.encode() + paired)
    assert [r["prompt"] for r in load_rows(path, "sft")] == ["abc ->", "\U0001f600"]


def test_bad_replay_data_stops_the_update_before_training(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = write(tmp_path / "d.jsonl", GOOD)
    replay = write(tmp_path / "r.jsonl", GOOD * 3 + '{"prompt": "\\ud800", "completion": "x"}\n')
    with pytest.raises(DataError, match=rf"{tmp_path}/r\.jsonl:4: field 'prompt' holds a lone surrogate"):
        run_update(tiny_model_dir, Recipe(method="sft", steps=1, batch_size=2), [data], tmp_path / "out",
                   replay=[replay])
    assert not (tmp_path / "out").exists()


def test_the_cli_refuses_bad_update_data_with_exit_2(workspace: Any, tiny_model_dir: Path, tmp_path: Path,
                                                     cli: Callable[..., Any]) -> None:
    from decided import release

    assert cli("register", "base", "--model", tiny_model_dir, workspace=workspace.root).code == 0
    release(workspace.store, [("base", "production", "base@1")])
    bad = write(tmp_path / "bad.jsonl", GOOD + '{"prompt": "x", "completion": "y", "z": "\\ud800"}\n')
    res = cli("update", "support", "--data", bad, workspace=workspace.root)
    assert res.code == 2, res.out + res.err
    assert f"{bad}:2: field 'z' holds a lone surrogate" in " ".join(res.err.split())
    assert "Traceback" not in res.err
    assert workspace.store.versions("support") == []
