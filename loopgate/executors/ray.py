"""The Ray executor: each job runs as a Ray task with the resources its kind asks for.

Jobs are plain functions of paths and records (:mod:`loopgate.executors.jobs`), so a task needs nothing from
the driver but its arguments; it writes only under the paths it is given and returns a record. Registry
writes stay in the driver: the loop submits jobs, waits for their records and decides between them.

Results are bit-identical to :class:`~loopgate.executors.base.InProcessExecutor` because a task runs the same
function with the same seeds and the same number of torch threads as the driver (``LOOPGATE_THREADS`` is
handed to every task, whatever thread count Ray gives its workers). The paths must be reachable from the
workers: a local cluster, or a cluster whose nodes share the workspace's file system.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from loopgate.errors import LoopgateError
from loopgate.spec import ExecutorSpec

R = TypeVar("R")

INSTALL_HINT = "pip install 'loopgate[ray]'"
# what a task inherits from the driver so that it computes exactly what the driver would
_PASSED_ENV = ("LOOPGATE_THREADS", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _ray_missing(detail: str) -> LoopgateError:
    return LoopgateError(
        f"the Ray executor needs Ray, which is not installed here ({detail}); install it with {INSTALL_HINT}, "
        "or run jobs in this process (unset LOOPGATE_EXECUTOR, or executor: {kind: in-process})")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise _ray_missing(str(e)) from e
    return ray


def _run_task(job: Callable[..., Any], kwargs: dict[str, Any], env: dict[str, str], cwd: str) -> Any:
    """Inside a Ray worker: the driver's environment and folder (a workspace opened as ``.`` gives relative
    paths) for this job, its thread count, then the job."""
    os.environ.update(env)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    from loopgate.models import set_threads

    set_threads()
    return job(**kwargs)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds on a ``host:port`` nobody listens on (Ray itself retries for minutes)."""
    if address == "auto" or address == "local":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected 'host:port' or 'ray://host:port', got {address!r}")
    with socket.create_connection((host, int(port)), timeout=timeout_s):
        pass


class _RayHandle(Generic[R]):
    """A submitted Ray task (a :class:`~loopgate.executors.base.JobHandle`)."""

    def __init__(self, ray: Any, ref: Any) -> None:
        self._ray, self._ref = ray, ref

    def result(self) -> R:
        try:
            return self._ray.get(self._ref)  # type: ignore[no-any-return]
        except self._ray.exceptions.RayTaskError as e:
            # a job's own error, e.g. a TransferError the loop handles, comes back as the job raised it
            if isinstance(e.cause, LoopgateError):
                raise e.cause from None
            raise


class RayExecutor:
    """Runs each job as a Ray task (``num_cpus``/``num_gpus`` per job kind, from the ``executor:`` section).

    Joins the cluster at ``address``; with no address, the cluster this process already joined (a test's
    ``ray.init(num_cpus=2)``), else a local one started here on first use."""

    name = "ray"

    def __init__(self, spec: ExecutorSpec | None = None) -> None:
        self.spec = spec or ExecutorSpec(kind="ray")
        # fail now if Ray is missing, but import it (about a second) only when the first job is submitted
        if importlib.util.find_spec("ray") is None:
            raise _ray_missing("no module named 'ray'")
        self._remote: dict[tuple[Callable[..., Any], float, float], Any] = {}

    def _connect(self) -> Any:
        ray = _import_ray()
        if ray.is_initialized():
            return ray
        address = self.spec.address
        try:
            if address:
                _check_reachable(address)
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False)
        except (OSError, RuntimeError, ValueError) as e:  # ConnectionError and TimeoutError are OSErrors
            where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
            raise LoopgateError(
                f"cannot reach {where}: {e}. Check that the cluster is running ('ray status' on its head node) "
                "and that executor.address (or LOOPGATE_RAY_ADDRESS) names it, e.g. 'head-node:6379' or "
                "'ray://head-node:10001'; or run jobs in this process with LOOPGATE_EXECUTOR=in-process") from e
        return ray

    def resources(self, job: Callable[..., Any]) -> tuple[float, float]:
        """(num_cpus, num_gpus) a job of this kind asks for."""
        own = self.spec.jobs.get(job.__name__)  # type: ignore[call-overload]
        cpus = own.num_cpus if own is not None and own.num_cpus is not None else self.spec.num_cpus
        gpus = own.num_gpus if own is not None and own.num_gpus is not None else self.spec.num_gpus
        return cpus, gpus

    def submit(self, job: Callable[..., R], /, **kwargs: Any) -> _RayHandle[R]:
        ray = self._connect()
        cpus, gpus = self.resources(job)
        key = (job, cpus, gpus)
        if key not in self._remote:
            self._remote[key] = ray.remote(_run_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0,
                                                              name=f"loopgate.{job.__name__}")
        env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        env.setdefault("LOOPGATE_THREADS", "1")
        return _RayHandle(ray, self._remote[key].remote(job, kwargs, env, os.getcwd()))

    def run(self, job: Callable[..., R], /, **kwargs: Any) -> R:
        return self.submit(job, **kwargs).result()

    def map(self, job: Callable[..., R], kwargs_list: list[dict[str, Any]], /) -> list[R]:
        handles = [self.submit(job, **kw) for kw in kwargs_list]
        return [h.result() for h in handles]
