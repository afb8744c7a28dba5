"""Shared, disk-cached tiny models for the train tests.

Every model is built through ``run_update`` and cached by ``model_cache.cached`` under ``tests/.cache/<name>-<sha>``,
keyed on its config, the test seed (``LOOPGATE_TEST_SEED``), the training libraries' versions and the source of
every Loopgate module training imports — a code change retrains, a rerun without one is fast. The model is
deliberately small (hidden 64, 2 layers, ≈0.14 M parameters): it learns the string tasks in a few hundred steps
and keeps the whole folder within a minute or two on 2 shared cores.

Lineage used by the tests (A = reverse, B = sort letters, D = upper-case):

    v0  (fresh, SEED) ──sft A──► v1 ──sft B──► child_full         (forgets A)
                                  ├──sft B + replay A──► child_replay
                                  ├──lora B──► child_lora (adapter)
                                  └──pretrain A+D text──► v2a       (foundation upgrade, continued)
    v0b (fresh, SEED + 1) ──sft A──► v2b                          (foundation upgrade, new init)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from model_cache import cached
from seed import SEED
from train_tasks import LORA_B, SFT_A, SFT_B, SFT_B_REPLAY, TRAIN, UPGRADE, sft_rows, text_rows, write_jsonl

from loopgate.hashing import sha256_file
from loopgate.models import TinyConfig, build_tiny_model, save_model, set_threads
from loopgate.spec import Recipe
from loopgate.train import run_update

SMALL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 256, "max_positions": 64}


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    set_threads(1)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The JSONL files every fixture trains on (contents are deterministic, so tmp is fine)."""
    d = tmp_path_factory.mktemp("data")
    return {
        "A": write_jsonl(d / "a.jsonl", sft_rows("A", TRAIN)),
        "B": write_jsonl(d / "b.jsonl", sft_rows("B", TRAIN)),
        "AD": write_jsonl(d / "ad.jsonl", sft_rows("A", TRAIN) + sft_rows("D", TRAIN)),
        "AD_text": write_jsonl(d / "ad_text.jsonl", text_rows("AD", TRAIN)),
    }


def _fresh(seed: int) -> Path:
    def build(out: Path) -> None:
        model, tok = build_tiny_model(TinyConfig(seed=seed, **SMALL))  # type: ignore[arg-type]
        save_model(model, tok, out)
    return cached(f"v0-s{seed}", {"seed": seed, **SMALL}, build)


def _update(name: str, parent: Path, recipe: Recipe, data: list[Path], replay: list[Path] | None = None) -> Path:
    config = {"parent": parent.name, "recipe": recipe.model_dump(mode="json"),
              "data": [sha256_file(p) for p in data], "replay": [sha256_file(p) for p in replay or []]}
    return cached(name, config, lambda out: run_update(parent, recipe, data, out, replay=replay or []) and None)


@pytest.fixture(scope="session")
def v1(data_dir: dict[str, Path]) -> Path:
    return _update("v1", _fresh(SEED), SFT_A, [data_dir["A"]])


@pytest.fixture(scope="session")
def child_full(v1: Path, data_dir: dict[str, Path]) -> Path:
    return _update("child_full", v1, SFT_B, [data_dir["B"]])


@pytest.fixture(scope="session")
def child_replay(v1: Path, data_dir: dict[str, Path]) -> Path:
    return _update("child_replay", v1, SFT_B_REPLAY, [data_dir["B"]], replay=[data_dir["A"]])


@pytest.fixture(scope="session")
def child_lora(v1: Path, data_dir: dict[str, Path]) -> Path:
    return _update("child_lora", v1, LORA_B, [data_dir["B"]])


@pytest.fixture(scope="session")
def v2a(v1: Path, data_dir: dict[str, Path]) -> Path:
    return _update("v2a", v1, UPGRADE, [data_dir["AD_text"]])


@pytest.fixture(scope="session")
def v2b(data_dir: dict[str, Path]) -> Path:
    return _update("v2b", _fresh(SEED + 1), SFT_A, [data_dir["A"]])
