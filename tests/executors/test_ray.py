"""The Ray executor against the in-process one, on a local 2-CPU Ray cluster started by this module.

A propagation wave of four independent children runs once in this process and once as Ray tasks, from two
copies of the same registry: the versions it records must be the same files, byte for byte. The children's
gates are non-blocking here — this proves where jobs run and that they compute the same thing, not what the
gates decide (tests/gates and tests/loop do that) — but every candidate is really built (a diff vector plus
a fine-tune) and evaluated.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopgate.errors import LoopgateError, UnsafeModelError
from loopgate.executors import InProcessExecutor, executor_for, jobs
from loopgate.executors.ray import RayExecutor
from loopgate.spec import ExecutorSpec

CHILDREN = ["c0", "c1", "c2", "c3"]
WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "candle", "forest", "rocket", "mirror",
         "garden", "pencil", "bridge", "castle", "violin", "carpet", "window", "saddle", "marble", "button",
         "ladder", "kettle", "anchor"]
NON_BLOCKING = {g: {"blocking": False} for g in ("regression", "inheritance", "safety", "cost", "rollback",
                                                   "plasticity")}


def _rows(kind: str, i: int) -> list[tuple[str, str]]:
    """(prompt, answer) pairs of one small task per line: copy for the foundation, a rotation per child."""
    if kind == "copy":
        return [(f"copy {w} =", f" {w}") for w in WORDS]
    return [(f"rot{i} {w} =", f" {w[i + 1:]}{w[:i + 1]}") for w in WORDS]


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """One local Ray cluster with 2 CPUs for the module (it takes seconds to start on 2 cores)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # keeps Ray's token files out of the home folder
    temp = tempfile.mkdtemp(prefix="lg-ray-")
    ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def wave_world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A registry where base@2 is released and its four children, each with its own trained version on
    base@1, wait for the wave (a folder: each test opens its own copy)."""
    from loopgate import loop
    from loopgate.loop.workspace import Workspace

    root = tmp_path_factory.mktemp("wave") / "eco"
    spec: dict[str, Any] = {
        "name": "wave", "suites": {"copy": {"path": "suites/copy.jsonl", "max_new_tokens": 8}},
        "recipes": {"quick": {"method": "sft", "steps": 10, "batch_size": 8, "lr": 3e-3, "max_length": 32}},
        "lines": {"base": {"tier": "foundation", "suites": ["copy"], "recipe": "quick"}},
        "policy": {"defaults": {**NON_BLOCKING, "plasticity": {"blocking": False, "probe_steps": 2}}},
    }
    _write(root / "suites/copy.jsonl", [{"id": f"q{j}", "prompt": p, "target": a.strip()}
                                        for j, (p, a) in enumerate(_rows("copy", 0))])
    _write(root / "data/copy.jsonl", [{"prompt": p, "completion": a} for p, a in _rows("copy", 0)])
    for i, child in enumerate(CHILDREN):
        spec["suites"][child] = {"path": f"suites/{child}.jsonl", "max_new_tokens": 8}
        spec["lines"][child] = {"tier": "industrial", "parent": "base", "recipe": "quick", "suites": [child],
                                "transfer": ["diff_vector_finetune"]}
        _write(root / f"suites/{child}.jsonl", [{"id": f"q{j}", "prompt": p, "target": a.strip()}
                                                 for j, (p, a) in enumerate(_rows("rot", i))])
        _write(root / f"data/{child}.jsonl", [{"prompt": p, "completion": a} for p, a in _rows("rot", i)])
    (root / "loopgate.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    ws, _ = Workspace.init(root)
    loop.register_model(ws, "base", tiny_model_dir)
    assert loop.release(ws, "base@1", actor="test").released
    for child in CHILDREN:
        assert loop.update(ws, child, [root / f"data/{child}.jsonl"], actor="test").released
    assert loop.update(ws, "base", [root / "data/copy.jsonl"], actor="test", propagate=False).released
    ws.store.close()
    return root


class Recording(RayExecutor):
    """The Ray executor, noting when each job is submitted and when its result is awaited."""

    def __init__(self, spec: ExecutorSpec) -> None:
        super().__init__(spec)
        self.log: list[tuple[str, str]] = []

    def submit(self, job: Callable[..., Any], /, **kwargs: Any) -> Any:
        handle = super().submit(job, **kwargs)
        self.log.append(("submit", job.__name__))
        log, name = self.log, job.__name__

        class Noted:
            def result(self) -> Any:
                log.append(("result", name))
                return handle.result()

        return Noted()


def _wave(root: Path, dest: Path, executor_section: dict[str, Any] | None = None) -> tuple[Any, list[Any]]:
    from loopgate import loop
    from loopgate.loop.workspace import Workspace

    shutil.copytree(root, dest)
    if executor_section is not None:
        spec = yaml.safe_load((dest / "loopgate.yaml").read_text())
        (dest / "loopgate.yaml").write_text(yaml.safe_dump({**spec, "executor": executor_section}, sort_keys=False))
    ws = Workspace.open(dest)
    if isinstance(ws.executor, RayExecutor):
        ws.executor = Recording(ws.executor.spec)
    return ws, loop.propagate_from(ws, "base@2", actor="test")


def test_an_unreachable_cluster_is_a_clear_error_in_seconds() -> None:
    import ray

    assert not ray.is_initialized()  # runs before the module's cluster starts
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(LoopgateError, match=rf"cannot reach the Ray cluster at '127.0.0.1:{port}'.*LOOPGATE_RAY"):
        RayExecutor(ExecutorSpec(kind="ray", address=f"127.0.0.1:{port}")).run(jobs.load_check, model_dir=Path("x"))
    assert time.perf_counter() - started < 30 and not ray.is_initialized()


def test_the_executor_comes_from_the_spec_unless_the_environment_names_one(monkeypatch: pytest.MonkeyPatch
                                                                          ) -> None:
    spec = ExecutorSpec(kind="ray", address="head:6379", num_cpus=2, jobs={"evaluate": {"num_cpus": 1}})
    ray_ex = executor_for(spec, env={})
    assert isinstance(ray_ex, RayExecutor) and ray_ex.spec.address == "head:6379"
    # per job kind: evaluation asks for its own CPUs, training for the default, no GPU unless asked
    assert ray_ex.resources(jobs.evaluate) == (1, 0) and ray_ex.resources(jobs.train) == (2, 0)
    assert isinstance(executor_for(spec, env={"LOOPGATE_EXECUTOR": "in-process"}), InProcessExecutor)
    env_ray = executor_for(None, env={"LOOPGATE_EXECUTOR": "ray", "LOOPGATE_RAY_ADDRESS": "other:6379"})
    assert isinstance(env_ray, RayExecutor) and env_ray.spec.address == "other:6379"
    with pytest.raises(LoopgateError, match="'dask' is not an executor"):
        executor_for(None, env={"LOOPGATE_EXECUTOR": "dask"})
    # Ray missing: the error names the extra to install
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(LoopgateError, match=r"pip install 'loopgate\[ray\]'"):
        executor_for(spec, env={})


def test_jobs_submitted_together_run_at_once_and_a_job_error_comes_back_unchanged(cluster: Any,
                                                                                   tmp_path: Path) -> None:
    ex = RayExecutor()

    def meet(me: str, other: str) -> tuple[int, bool]:
        """Mark this task as running, then wait (at most 2 minutes) for the other one to be running too."""
        (tmp_path / me).touch()
        deadline = time.time() + 120
        while time.time() < deadline and not (tmp_path / other).exists():
            time.sleep(0.05)
        return os.getpid(), (tmp_path / other).exists()

    # each task returns only once it has seen the other one running: true for both only if they ran at the
    # same time, on two worker processes (however slowly the workers start on a busy machine)
    (pid_a, met_a), (pid_b, met_b) = ex.map(meet, [{"me": "a", "other": "b"}, {"me": "b", "other": "a"}])
    assert met_a and met_b and len({pid_a, pid_b, os.getpid()}) == 3
    with pytest.raises(UnsafeModelError, match="is not a folder") as err:
        ex.run(jobs.load_check, model_dir=tmp_path / "missing")
    assert type(err.value) is UnsafeModelError  # the job's own class, not Ray's wrapper


@pytest.mark.slow
def test_a_wave_of_four_children_on_ray_records_the_same_versions_as_in_process(
        cluster: Any, wave_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPGATE_EXECUTOR", raising=False)
    local_ws, local = _wave(wave_world, tmp_path / "in-process")
    assert isinstance(local_ws.executor, InProcessExecutor)
    # the cluster is chosen in loopgate.yaml, with per-kind resources
    ray_ws, remote = _wave(wave_world, tmp_path / "ray",
                           {"kind": "ray", "num_cpus": 1, "jobs": {"transfer_candidate": {"num_cpus": 1}}})
    assert isinstance(ray_ws.executor, Recording)

    assert [o.line for o in local] == CHILDREN
    assert all(o.released and o.version == f"{o.line}@2" and o.strategy == "diff_vector_finetune" for o in local)
    assert [(o.line, o.version, o.released, o.strategy) for o in remote] == [
        (o.line, o.version, o.released, o.strategy) for o in local]
    for o in local:
        assert o.version is not None
        here, there = local_ws.store.version(o.version), ray_ws.store.version(o.version)
        assert here.files == there.files  # every artifact, byte for byte
        assert here.files != local_ws.store.version(f"{o.line}@1").files  # really re-derived
        assert (local_ws.store.evaluations(o.version) and
                [e.score for e in local_ws.store.evaluations(o.version)]
                == [e.score for e in ray_ws.store.evaluations(o.version)])
    # the four candidates were built as one batch, then evaluated as one, before anything was awaited alone
    log = ray_ws.executor.log  # type: ignore[attr-defined]
    assert log[:8] == [("submit", "transfer_candidate")] * 4 + [("result", "transfer_candidate")] * 4
    assert log[8:12] == [("submit", "evaluate")] * 4
    # and before the releases decide one by one, the four new versions' profiles were measured as one batch
    first = log.index(("submit", "profile"))
    assert log[first:first + 4] == [("submit", "profile")] * 4

    # several versions evaluated at once (each on a suite it has no evaluation for yet): one batch of jobs,
    # recorded in the registry, the same scores as in-process
    from loopgate.loop.evaluation import evaluate_versions

    del log[:]
    asked = [("c0@2", ["c1"]), ("c1@2", ["c0"])]
    remote_evals = evaluate_versions(ray_ws, asked)
    assert log == [("submit", "evaluate")] * 2 + [("result", "evaluate")] * 2
    local_evals = evaluate_versions(local_ws, asked)
    assert [{n: e.score for n, e in r.items()} for r in remote_evals] == [
        {n: e.score for n, e in r.items()} for r in local_evals]
    assert ray_ws.store.evaluations("c0@2", remote_evals[0]["c1"].suite_sha256)
