"""Shared, disk-cached tiny models for the train tests.

Every model is built through ``run_update`` and cached under ``tests/.cache/<name>-<sha>``. The key holds the
fixture's config, the test seed (``LOOPGATE_TEST_SEED``, see ``tests/seed.py``), the installed versions of the
libraries that train, and the source of every Loopgate module training imports (computed from the imports of
``loopgate/train``, so a change to ``loopgate/models`` or ``loopgate/spec.py`` retrains) — a rerun with none of
those changed is fast. The model is deliberately small (hidden 64, 2 layers, ≈0.14 M parameters): it learns the
string tasks in a few hundred steps and keeps the whole folder within a minute or two on 2 shared cores.

Lineage used by the tests (A = reverse, B = sort letters, D = upper-case):

    v0  (fresh, SEED) ──sft A──► v1 ──sft B──► child_full         (forgets A)
                                  ├──sft B + replay A──► child_replay
                                  ├──lora B──► child_lora (adapter)
                                  └──pretrain A+D text──► v2a       (foundation upgrade, continued)
    v0b (fresh, SEED + 1) ──sft A──► v2b                          (foundation upgrade, new init)
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from seed import SEED
from train_tasks import LORA_B, SFT_A, SFT_B, SFT_B_REPLAY, TRAIN, UPGRADE, sft_rows, text_rows, write_jsonl

from loopgate.hashing import sha256_file, sha256_json
from loopgate.models import TinyConfig, build_tiny_model, save_model, set_threads
from loopgate.spec import Recipe
from loopgate.train import run_update

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "tests" / ".cache"
SMALL = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 256, "max_positions": 64}
LIBRARIES = ("torch", "transformers", "peft", "trl", "tokenizers", "safetensors", "accelerate", "datasets")


def loopgate_sources(start: list[Path]) -> list[Path]:
    """``start`` plus every ``loopgate`` module it imports, transitively (packages' ``__init__.py`` included)."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from loopgate.models import io`` may name a submodule as well as a symbol
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] != "loopgate":
                    continue
                for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                    base = ROOT.joinpath(*parts[:i])
                    todo += [p for p in (base / "__init__.py", base.with_suffix(".py")) if p.is_file()]
    return sorted(seen)


@functools.cache
def _code_key() -> str:
    here = Path(__file__).parent
    files = loopgate_sources(sorted((ROOT / "loopgate" / "train").glob("*.py")) + [here / "train_tasks.py"])
    libraries = {name: importlib.metadata.version(name) for name in LIBRARIES}
    return sha256_json({"files": {str(f.relative_to(ROOT)): sha256_file(f) for f in files},
                        "libraries": libraries})


def cached(name: str, config: object, build: Callable[[Path], None]) -> Path:
    """Build into ``tests/.cache/<name>-<sha>`` once; later sessions reuse the folder."""
    key = sha256_json({"config": config, "seed": SEED, "code": _code_key()})[:16]
    out = CACHE / f"{name}-{key}"
    if (out / "DONE").exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")  # a cache, never committed
    tmp = CACHE / f"{name}-{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp)
    (tmp / "DONE").write_text("")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


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
