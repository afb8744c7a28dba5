"""The GPU benchmarks run where no GPU is: ``--smoke`` drives every path of ``bench/gpu_eval.py`` and
``bench/gpu_update.py`` on the CPU with a tiny model, so a session that has a GPU for half an hour finds scripts
that work; without ``--smoke`` on a machine without CUDA they say that nothing was measured and exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> str:
    env = {**os.environ, "LOOPGATE_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_gpu_eval_smoke_runs_every_path() -> None:
    out = run("gpu_eval.py", "--smoke")
    assert len(re.findall(r"plain generate, batch +\d+: +[\d.]+ items/s", out)) == 2, out
    assert re.search(r"loopgate engine +: +[\d.]+ items/s \(peak memory [\d,]+ MB\)", out), out
    # transformers' continuous batching ran to the end on every prompt (an unavailable one prints why)
    assert re.search(r"continuous batching +: +[\d.]+ items/s", out), out
    assert float(re.search(r"gpu_eval: vs_plain=([\d.]+)", out)[1]) > 0  # type: ignore[index]


def test_gpu_update_smoke_runs_both_sides() -> None:
    out = run("gpu_update.py", "--smoke")
    runs = re.findall(r"run 0 (handwritten|loopgate) +(\d+) tokens in", out)
    assert [r[0] for r in runs] == ["handwritten", "loopgate"], out
    assert runs[0][1] == runs[1][1] != "0", out  # the same batches on both sides
    assert float(re.search(r"gpu_update: vs_handwritten=([\d.]+)", out)[1]) > 0  # type: ignore[index]


@pytest.mark.parametrize("script", ["gpu_eval.py", "gpu_update.py"])
def test_without_a_gpu_nothing_is_measured(script: str) -> None:
    if torch.cuda.is_available():  # on a GPU machine the full benchmark would run: that is bench/, not a test
        return
    out = run(script)
    assert re.fullmatch(rf"{script.removesuffix('.py')}: no GPU: not measured \(.*\)\n", out), out
