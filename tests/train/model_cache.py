"""The on-disk cache of the train tests' tiny models, keyed on everything that decides their weights.

A folder ``tests/.cache/<name>-<sha>`` is reused only while its key is unchanged: the fixture's config, the test
seed (``LOOPGATE_TEST_SEED``), the installed versions of the libraries that train, and the source of
``train_tasks.py`` and of every Loopgate module ``loopgate/train`` imports, transitively (computed from the import
statements, so a change to ``loopgate/models``, ``loopgate/spec/`` or ``loopgate/jsonl.py`` retrains).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from seed import SEED

from loopgate.hashing import sha256_file, sha256_json

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "tests" / ".cache"
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


def training_sources() -> list[Path]:
    """Every Loopgate source file that training runs: ``loopgate/train`` and what it imports."""
    return loopgate_sources(sorted((ROOT / "loopgate" / "train").glob("*.py")))


@functools.cache
def _code_key() -> str:
    files = training_sources() + [Path(__file__).parent / "train_tasks.py"]
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
    # one build folder per process: two test sessions sharing the checkout may build the same model at once
    tmp = CACHE / f"{name}-{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp)
    (tmp / "DONE").write_text("")
    if not (out / "DONE").exists():  # else another session finished first: its weights are the same
        shutil.rmtree(out, ignore_errors=True)  # a half-written folder left by a killed session
        try:
            tmp.rename(out)
        except OSError:
            if not (out / "DONE").exists():
                raise
    shutil.rmtree(tmp, ignore_errors=True)
    return out
