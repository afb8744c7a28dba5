"""Updating a line that is already a LoRA adapter trains that adapter as it is: a recipe whose ``lora`` section asks
for other settings (rank, alpha, targets, trainable tokens — an invalid one included) is refused, instead of being
silently ignored while the version records it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from decided import release

from loopgate.errors import SpecError
from loopgate.loop.workspace import Workspace
from loopgate.spec import LoraSettings, Recipe
from loopgate.train import run_update

ROWS = [{"prompt": f"{w} ->", "completion": w[::-1]} for w in ("abc", "dog", "sun", "map")]
MADE_WITH = LoraSettings(r=2, alpha=4, target_modules=["q_proj", "v_proj"])


def write_rows(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture(scope="module")
def adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("adapter")
    res = run_update(tiny_model_dir, Recipe(method="lora", steps=1, batch_size=2, lora=MADE_WITH),
                     [write_rows(root / "d.jsonl")], root / "adapter")
    assert res.kind == "adapter"
    return root / "d.jsonl", res.out_dir


@pytest.mark.parametrize("asked, match", [
    ({"r": 4}, r"made with r=2, but the recipe's lora section asks for r=4"),
    ({"alpha": 16}, r"made with alpha=4, .* asks for alpha=16"),
    ({"target_modules": ["q_proj", "k_proj", "v_proj"]}, r"target_modules=\['q_proj', 'v_proj'\]"),
    ({"trainable_tokens": ["A"]}, r"trainable_tokens=None, .* trainable_tokens=\[\d+\]"),
    ({"trainable_tokens": ["ab"]}, "'ab' is not a single token"),
])
def test_a_continued_adapter_refuses_settings_it_does_not_have(asked: dict[str, Any], match: str,
                                                               adapter: tuple[Path, Path], tiny_model_dir: Path,
                                                               tmp_path: Path) -> None:
    data, adapter_dir = adapter
    recipe = Recipe(method="lora", steps=1, batch_size=2, lora=MADE_WITH.model_copy(update=asked))
    with pytest.raises(SpecError, match=match):
        run_update(tiny_model_dir, recipe, [data], tmp_path / "out", adapter_dir=adapter_dir)
    assert not (tmp_path / "out").exists()  # refused before any training


@pytest.mark.parametrize("lora", [MADE_WITH, None, LoraSettings(r=2, alpha=4)])
def test_a_continued_adapter_trains_with_its_own_settings(lora: LoraSettings | None, adapter: tuple[Path, Path],
                                                          tiny_model_dir: Path, tmp_path: Path) -> None:
    """The adapter's settings restated, no lora section, or one that leaves the targets to the model: all train."""
    data, adapter_dir = adapter
    res = run_update(tiny_model_dir, Recipe(method="lora", steps=1, batch_size=2, lora=lora), [data], tmp_path / "o",
                     adapter_dir=adapter_dir)
    made = json.loads((res.out_dir / "adapter_config.json").read_text())
    assert (made["r"], made["lora_alpha"], sorted(made["target_modules"])) == (2, 4, ["q_proj", "v_proj"])


def test_the_cli_refuses_an_update_of_an_adapter_line_with_an_invalid_setting(
        tmp_path: Path, tiny_model_dir: Path, adapter: tuple[Path, Path], cli: Callable[..., Any]) -> None:
    data, adapter_dir = adapter
    spec = """\
name: adapters
recipes:
  app-lora:
    method: lora
    steps: 1
    batch_size: 2
    lora: {r: 2, alpha: 4, target_modules: [q_proj, v_proj], trainable_tokens: ["ab"]}
lines:
  base: {tier: foundation}
  support: {tier: industrial, parent: base, recipe: app-lora}
"""
    ws, _ = Workspace.init(tmp_path / "ws", spec_text=spec)
    try:
        assert cli("register", "base", "--model", tiny_model_dir, workspace=ws.root).code == 0
        release(ws.store, [("base", "production", "base@1")])
        assert cli("register", "support", "--model", adapter_dir, "--base", "base@1", workspace=ws.root).code == 0
        res = cli("update", "support", "--data", data, workspace=ws.root)
        assert res.code == 2, res.out + res.err
        assert "'ab' is not a single token" in res.err and "Traceback" not in res.err
        assert [v.id for v in ws.store.versions("support")] == ["support@1"]  # no candidate recorded
    finally:
        ws.store.close()
