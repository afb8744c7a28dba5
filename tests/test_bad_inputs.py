"""Files a user hands in that are not what they claim to be: each is refused with exit 2 and one paragraph
naming the file, never a traceback — update data, suites and model folders (issue 9, item 8)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from decided import release
from safetensors.torch import load_file, save_file

from loopgate.train.data import load_rows

Cli = Callable[..., Any]

NOT_UTF8 = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
    "latin-1": '{"prompt": "café", "completion": "crème"}\n'.encode("latin-1"),
    "utf-16": '{"prompt": "a", "completion": "b"}\n'.encode("utf-16"),
}


def refused(res: Any, *names: str) -> None:
    """Exit 2, one paragraph on stderr that names every one of ``names``, nothing on stdout, no traceback."""
    assert res.code == 2, (res.out, res.err)
    text = " ".join(res.err.split())
    for name in names:
        assert name in text, (name, res.err)
    assert "Traceback" not in res.err and res.out == ""
    assert res.err.strip().count("\n\n") == 0


@pytest.fixture
def shipped(workspace: Any, tiny_model_dir: Path, cli: Cli) -> Any:
    """base@1 registered from the tiny model and in production; a valid reversal suite on disk."""
    assert cli("register", "base", "--model", tiny_model_dir, workspace=workspace.root).code == 0
    release(workspace.store, [("base", "production", "base@1")], kind="release", reason="t", actor="t")
    suite = workspace.root / "suites" / "reversal.jsonl"
    suite.parent.mkdir(parents=True, exist_ok=True)
    suite.write_text("".join(json.dumps({"id": w, "prompt": f"reverse: {w}\n=>", "target": w[::-1]}) + "\n"
                             for w in ("abc", "dog", "sun")), encoding="utf-8")
    return workspace


# ------------------------------------------------------------------------------------------ JSONL files


@pytest.mark.parametrize("kind", sorted(NOT_UTF8))
def test_update_data_that_is_not_utf8_text_exits_2_naming_the_file(shipped: Any, cli: Cli, tmp_path: Path,
                                                                    kind: str) -> None:
    data = tmp_path / f"{kind}.jsonl"
    data.write_bytes(NOT_UTF8[kind])
    res = cli("update", "support", "--data", data, "--json", workspace=shipped.root)
    refused(res, str(data), "not UTF-8 text")
    assert shipped.store.versions("support") == []


def test_update_data_folder_exits_2(shipped: Any, cli: Cli, tmp_path: Path) -> None:
    res = cli("update", "support", "--data", tmp_path, workspace=shipped.root)
    refused(res, str(tmp_path))


def test_suite_that_is_not_utf8_text_exits_2_naming_the_file(shipped: Any, cli: Cli) -> None:
    suite = shipped.root / "suites" / "reversal.jsonl"
    suite.write_bytes(NOT_UTF8["binary"])
    res = cli("evaluate", "base@1", "--suite", "reversal", workspace=shipped.root)
    refused(res, str(suite), "not UTF-8")


def test_jsonl_reader_keeps_rows_that_hold_line_separators(tmp_path: Path) -> None:
    """U+2028 and U+0085 are legal raw inside a JSON string; only "\\n" ends a row. A UTF-8 BOM is dropped."""
    data = tmp_path / "d.jsonl"
    rows = [{"prompt": "one\u2028two", "completion": "x\x85y"}, {"prompt": "p", "completion": "c"}]
    data.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode())
    assert load_rows(data, "sft") == rows


# ------------------------------------------------------------------------------------------ model folders


def copy_model(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_truncated_safetensors_is_refused_at_registration(workspace: Any, tiny_model_dir: Path, cli: Cli,
                                                          tmp_path: Path) -> None:
    bad = copy_model(tiny_model_dir, tmp_path / "truncated")
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size * 2 // 3])  # a download cut short
    res = cli("register", "base", "--model", bad, "--json", workspace=workspace.root)
    refused(res, str(weights), "is truncated")
    assert workspace.store.versions("base") == []
    assert not any(p.is_file() for p in workspace.store.artifacts.root.rglob("*"))  # nothing stored


def test_safetensors_cut_inside_its_header_is_refused(workspace: Any, tiny_model_dir: Path, cli: Cli,
                                                      tmp_path: Path) -> None:
    bad = copy_model(tiny_model_dir, tmp_path / "stub")
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:100])
    refused(cli("register", "base", "--model", bad, workspace=workspace.root), str(bad / "model.safetensors"))


def test_tensor_shape_that_disagrees_with_config_is_refused(workspace: Any, tiny_model_dir: Path, cli: Cli,
                                                            tmp_path: Path) -> None:
    bad = copy_model(tiny_model_dir, tmp_path / "wrong-config")
    config = json.loads((bad / "config.json").read_text())
    config["intermediate_size"] = 48  # the weights were saved with 64
    (bad / "config.json").write_text(json.dumps(config))
    res = cli("register", "base", "--model", bad, workspace=workspace.root)
    refused(res, str(bad), "config.json", "model.layers.0.mlp.down_proj.weight has shape [32, 64] in "
                                          "model.safetensors, config.json implies [32, 48]")
    assert workspace.store.versions("base") == []


def test_missing_tensor_is_refused(workspace: Any, tiny_model_dir: Path, cli: Cli, tmp_path: Path) -> None:
    """transformers would fill a missing tensor with random numbers and say nothing."""
    bad = copy_model(tiny_model_dir, tmp_path / "missing")
    tensors = load_file(bad / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, bad / "model.safetensors", metadata={"format": "pt"})
    res = cli("register", "base", "--model", bad, workspace=workspace.root)
    refused(res, "missing: model.layers.1.mlp.up_proj.weight")


def test_unreadable_config_is_refused(workspace: Any, tiny_model_dir: Path, cli: Cli, tmp_path: Path) -> None:
    bad = copy_model(tiny_model_dir, tmp_path / "config")
    (bad / "config.json").write_bytes(b"\x00\x01binary")
    refused(cli("register", "base", "--model", bad, workspace=workspace.root), str(bad / "config.json"))


def test_truncated_adapter_is_refused(shipped: Any, tiny_model_dir: Path, cli: Cli, tmp_path: Path) -> None:
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16])
    res = cli("register", "support", "--model", adapter, "--base", "base@1", workspace=shipped.root)
    refused(res, str(weights), "is truncated")


def test_intact_adapter_registers(shipped: Any, tiny_model_dir: Path, cli: Cli, tmp_path: Path) -> None:
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    res = cli("register", "support", "--model", adapter, "--base", "base@1", "--json", workspace=shipped.root)
    assert res.code == 0, res.err
    assert res.json()["kind"] == "adapter"


def test_already_stored_truncated_version_fails_with_exit_2_when_used(shipped: Any, tiny_model_dir: Path,
                                                                      cli: Cli, tmp_path: Path) -> None:
    """A version stored before registration checked headers: using it is exit 2 naming the file."""
    bad = copy_model(tiny_model_dir, tmp_path / "old")
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    shipped.store.add_version("base", {p.name: p for p in bad.iterdir()})  # as the old `register` did
    res = cli("evaluate", "base@2", "--suite", "reversal", workspace=shipped.root)
    refused(res, "model.safetensors is truncated")


def make_adapter(base: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model

    from loopgate.models import load_model

    torch.manual_seed(0)
    model = get_peft_model(load_model(base).model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(str(out))
    return out


# ------------------------------------------------------------------------------------------ other files read


def test_loopgate_yaml_that_is_not_utf8_text_exits_2_naming_it(workspace: Any, cli: Cli) -> None:
    (workspace.root / "loopgate.yaml").write_bytes(NOT_UTF8["binary"])
    refused(cli("status", workspace=workspace.root), "loopgate.yaml", "not UTF-8")


def test_lmeval_samples_that_are_not_utf8_text_are_a_data_error(tmp_path: Path) -> None:
    from loopgate.errors import DataError
    from loopgate.evaluate.lmeval_import import import_lmeval

    results = tmp_path / "results_2026.json"
    results.write_text(json.dumps({"results": {"t": {"acc,none": 0.5}}, "configs": {"t": {}}}))
    (tmp_path / "samples_t_2026.jsonl").write_bytes(NOT_UTF8["latin-1"])
    with pytest.raises(DataError, match="samples_t_2026.jsonl.*not UTF-8"):
        import_lmeval(results, version="v1")


def test_an_unwritable_junit_path_is_refused_before_the_release(shipped: Any, cli: Cli, tmp_path: Path) -> None:
    """Before: the release happened, then writing the report raised a traceback (#20)."""
    ws = shipped
    before = len(ws.store.ledger())
    for bad in (tmp_path / "no-such-folder" / "gates.xml", tmp_path):
        res = cli("release", "base@1", "--junit", bad, workspace=ws.root)
        assert res.code == 2 and "cannot be written" in res.err and "Traceback" not in res.err, res.err
    assert len(ws.store.ledger()) == before
