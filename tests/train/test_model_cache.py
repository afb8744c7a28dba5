"""The train tests' model cache retrains when anything that decides the weights changes."""

from __future__ import annotations

from pathlib import Path

from model_cache import ROOT, loopgate_sources, training_sources


def test_cache_key_covers_every_module_training_runs() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in training_sources()}
    # the modules a trained fixture's weights depend on beyond loopgate/train (a stale key once reused models
    # trained by old loopgate/models code)
    assert {"loopgate/models/tiny.py", "loopgate/models/io.py", "loopgate/spec/__init__.py", "loopgate/jsonl.py",
            "loopgate/train/loop.py", "loopgate/train/regularizers.py"} <= files
    assert not any(f.startswith(("loopgate/loop/", "loopgate/gates/", "loopgate/cli")) for f in files), \
        "higher layers do not decide the weights; changing them must not retrain"


def test_import_closure_follows_packages_and_submodules(tmp_path: Path) -> None:
    start = tmp_path / "user.py"
    start.write_text("import loopgate.models.tiny\nfrom loopgate.train import data\nimport os\n")
    files = {p.relative_to(ROOT).as_posix() for p in loopgate_sources([start]) if p != start}
    assert {"loopgate/__init__.py", "loopgate/models/__init__.py", "loopgate/models/tiny.py",
            "loopgate/train/__init__.py", "loopgate/train/data.py", "loopgate/jsonl.py"} <= files
