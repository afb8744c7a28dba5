"""A propagation wave of four children, in this process and on a local 2-CPU Ray cluster.

One registry is built once (in-process): a tiny foundation released as ``base@1``, four industrial children
each trained on base@1 on its own task, and ``base@2`` (base@1 updated) released without its wave. Two copies
of that registry then run the same wave below base@2 — ``loop.propagate_from`` — one with the in-process
executor, one with the Ray executor on ``ray.init(num_cpus=2)``. The cluster is started and its two workers
warmed (torch imported) before the Ray timer starts; both timers cover the whole wave: building each child's
candidate (diff vector + fine-tune), evaluating it, the acceptance decision, registering it, and its release
decision with every gate (profiles, the rollback target re-scored, serving measured back to back). The gates
are non-blocking here so that every child goes through every step whatever the tiny models learn; the
versions of both runs must have the same artifact hashes (the benchmark fails otherwise).

    LOOPGATE_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/ray_wave.py [--steps 60] [--hidden 64]

The last line reads exactly ``ray_wave: inprocess_s=X ray_s=Y speedup=Z``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

CHILDREN = ["c0", "c1", "c2", "c3"]
WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "candle", "forest", "rocket", "mirror",
         "garden", "pencil", "bridge", "castle", "violin", "carpet", "window", "saddle", "marble", "button",
         "ladder", "kettle", "anchor"]
NON_BLOCKING = {g: {"blocking": False} for g in ("regression", "inheritance", "safety", "cost", "rollback",
                                                   "plasticity")}


def _rows(kind: str, i: int) -> list[tuple[str, str]]:
    if kind == "copy":
        return [(f"copy {w} =", f" {w}") for w in WORDS]
    return [(f"rot{i} {w} =", f" {w[i + 1:]}{w[:i + 1]}") for w in WORDS]


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def build_world(root: Path, steps: int, hidden: int) -> Path:
    """The registry just before the wave: base@2 released, four children on base@1."""
    from loopgate import loop
    from loopgate.loop.workspace import Workspace
    from loopgate.models import TinyConfig, build_tiny_model, save_model

    model, tok = build_tiny_model(TinyConfig(seed=0, hidden_size=hidden, num_layers=2, num_heads=4,
                                             intermediate_size=hidden * 4, max_positions=64))
    base_dir = save_model(model, tok, root / "tiny")
    eco = root / "eco"
    recipe = {"method": "sft", "steps": steps, "batch_size": 24, "lr": 3e-3, "max_length": 32}
    spec: dict[str, Any] = {
        "name": "ray-wave", "suites": {"copy": {"path": "suites/copy.jsonl", "max_new_tokens": 8}},
        "recipes": {"domain": recipe}, "lines": {"base": {"tier": "foundation", "suites": ["copy"],
                                                           "recipe": "domain"}},
        "policy": {"defaults": dict(NON_BLOCKING)}}
    _write(eco / "suites/copy.jsonl", [{"id": f"q{j}", "prompt": p, "target": a.strip()}
                                       for j, (p, a) in enumerate(_rows("copy", 0))])
    _write(eco / "data/copy.jsonl", [{"prompt": p, "completion": a} for p, a in _rows("copy", 0)])
    for i, child in enumerate(CHILDREN):
        spec["suites"][child] = {"path": f"suites/{child}.jsonl", "max_new_tokens": 8}
        spec["lines"][child] = {"tier": "industrial", "parent": "base", "recipe": "domain", "suites": [child],
                                "transfer": ["diff_vector_finetune"]}
        _write(eco / f"suites/{child}.jsonl", [{"id": f"q{j}", "prompt": p, "target": a.strip()}
                                               for j, (p, a) in enumerate(_rows("rot", i))])
        _write(eco / f"data/{child}.jsonl", [{"prompt": p, "completion": a} for p, a in _rows("rot", i)])
    (eco / "loopgate.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    ws, _ = Workspace.init(eco)
    loop.register_model(ws, "base", base_dir)
    assert loop.release(ws, "base@1", actor="bench").released
    for child in CHILDREN:
        assert loop.update(ws, child, [eco / f"data/{child}.jsonl"], actor="bench").released
    assert loop.update(ws, "base", [eco / "data/copy.jsonl"], actor="bench", propagate=False).released
    ws.store.close()
    return eco


class Timed:
    """Any executor, adding up per job kind the seconds the loop spent waiting for jobs (in-process: running
    them; Ray: until their results came back) — where the wave's wall time went."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name
        self.waited: dict[str, float] = {}

    def _add(self, kind: str, since: float) -> None:
        self.waited[kind] = self.waited.get(kind, 0.0) + time.perf_counter() - since

    def submit(self, job: Any, /, **kwargs: Any) -> Any:
        started = time.perf_counter()
        handle = self.inner.submit(job, **kwargs)
        self._add(job.__name__, started)
        timed = self

        class Handle:
            def result(self) -> Any:
                since = time.perf_counter()
                try:
                    return handle.result()
                finally:
                    timed._add(job.__name__, since)

        return Handle()

    def run(self, job: Any, /, **kwargs: Any) -> Any:
        return self.submit(job, **kwargs).result()

    def map(self, job: Any, kwargs_list: list[dict[str, Any]], /) -> list[Any]:
        handles = [self.submit(job, **kw) for kw in kwargs_list]
        return [h.result() for h in handles]

    def summary(self) -> str:
        return ", ".join(f"{k} {v:.1f} s" for k, v in sorted(self.waited.items(), key=lambda kv: -kv[1]))


def wave(eco: Path, dest: Path, executor: Any) -> tuple[float, dict[str, dict[str, str]]]:
    """Seconds of the wave below base@2 on a copy of ``eco``, and the new versions' files."""
    from loopgate import loop
    from loopgate.loop.workspace import Workspace

    shutil.copytree(eco, dest)
    ws = Workspace.open(dest)
    ws.executor = executor = Timed(executor)
    started = time.perf_counter()
    outcomes = loop.propagate_from(ws, "base@2", actor="bench")
    wall = time.perf_counter() - started
    print(f"  {executor.name}: waiting for jobs by kind: {executor.summary()}", flush=True)
    assert [o.line for o in outcomes] == CHILDREN and all(o.released for o in outcomes), outcomes
    files = {o.version: ws.store.version(o.version).files for o in outcomes if o.version}
    ws.store.close()
    return wall, files


def _warm(model_dir: Path) -> int:
    """A Ray worker's first job: import what the wave's jobs import and load a model once."""
    import loopgate.evaluate.plasticity
    import loopgate.evaluate.runner
    import loopgate.evaluate.serving
    import loopgate.train.transfer  # noqa: F401
    from loopgate.executors import jobs

    jobs.load_check(model_dir=model_dir)
    return os.getpid()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="the children's recipe steps (the fine-tune is 30 %%)")
    ap.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny model")
    args = ap.parse_args()
    os.environ.setdefault("LOOPGATE_THREADS", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # keeps Ray's token files out of the home folder

    import ray

    from loopgate.executors import InProcessExecutor
    from loopgate.executors.ray import RayExecutor

    root = Path(tempfile.mkdtemp(prefix="lg-ray-wave-"))
    try:
        t = time.perf_counter()
        eco = build_world(root, args.steps, args.hidden)
        print(f"world built in {time.perf_counter() - t:.1f} s (in-process)", flush=True)
        inprocess_s, here = wave(eco, root / "in-process", InProcessExecutor())
        print(f"in-process wave: {inprocess_s:.1f} s", flush=True)

        t = time.perf_counter()
        ray.init(num_cpus=2, _temp_dir=str(root / "ray-temp"), include_dashboard=False, log_to_driver=False)
        ex = RayExecutor()
        # two workers up, with what the jobs import already imported — as in this process after the build
        ex.map(_warm, [{"model_dir": root / "tiny"}] * 2)
        print(f"cluster started and warmed in {time.perf_counter() - t:.1f} s (not in the Ray figure)", flush=True)
        ray_s, there = wave(eco, root / "ray", ex)
        ray.shutdown()
        assert here == there, "the Ray wave recorded different artifacts than the in-process one"
        print(f"same versions and artifact hashes: {', '.join(here)}; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores")
        print(f"ray_wave: inprocess_s={inprocess_s:.1f} ray_s={ray_s:.1f} speedup={inprocess_s / ray_s:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
