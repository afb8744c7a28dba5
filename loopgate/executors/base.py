"""The executor interface, the in-process executor every caller goes through by default, and the choice of
executor (``executor:`` in ``loopgate.yaml``, overridden by ``LOOPGATE_EXECUTOR``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from loopgate.errors import LoopgateError
from loopgate.spec import ExecutorSpec

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class JobHandle(Protocol[R_co]):
    """A submitted job: ``result()`` waits for it and returns its result or re-raises its error."""

    def result(self) -> R_co: ...


class Executor(Protocol):
    """Runs jobs and returns their results (re-raising a job's ``LoopgateError`` unchanged).

    ``submit`` starts a job and returns a handle at once; jobs submitted together may run at the same time on
    an executor that has room for them (a Ray cluster), one after the other on one that has not (in-process).
    ``map`` runs one job per keyword set and returns the results in the same order."""

    name: str

    def run(self, job: Callable[..., R], /, **kwargs: Any) -> R: ...

    def submit(self, job: Callable[..., R], /, **kwargs: Any) -> JobHandle[R]: ...

    def map(self, job: Callable[..., R], kwargs_list: list[dict[str, Any]], /) -> list[R]: ...


class _Done(Generic[R]):
    """A job that already ran: its result, or the error it raised (re-raised by ``result``)."""

    def __init__(self, value: R | None = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error

    def result(self) -> R:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class InProcessExecutor:
    """Runs each job in this process, now, one after the other: the default, and what most tests use."""

    name = "in-process"

    def run(self, job: Callable[..., R], /, **kwargs: Any) -> R:
        return job(**kwargs)

    def submit(self, job: Callable[..., R], /, **kwargs: Any) -> JobHandle[R]:
        try:
            return _Done(job(**kwargs))
        except Exception as e:  # kept for result(), as a pool would keep it
            return _Done(error=e)

    def map(self, job: Callable[..., R], kwargs_list: list[dict[str, Any]], /) -> list[R]:
        return [job(**kw) for kw in kwargs_list]


EXECUTORS = ("in-process", "ray")


def executor_for(spec: ExecutorSpec | None = None, env: Mapping[str, str] | None = None) -> Executor:
    """The executor a workspace runs its jobs on: ``LOOPGATE_EXECUTOR`` (``in-process`` or ``ray``) when set,
    else the spec's ``executor:`` section, else in-process. ``LOOPGATE_RAY_ADDRESS`` overrides the address."""
    env = os.environ if env is None else env
    spec = spec or ExecutorSpec()
    kind = env.get("LOOPGATE_EXECUTOR") or spec.kind
    if kind not in EXECUTORS:
        raise LoopgateError(f"LOOPGATE_EXECUTOR={kind!r} is not an executor Loopgate knows; use one of "
                            f"{', '.join(EXECUTORS)}")
    if kind == "in-process":
        return InProcessExecutor()
    from loopgate.executors.ray import RayExecutor

    address = env.get("LOOPGATE_RAY_ADDRESS") or spec.address
    return RayExecutor(spec.model_copy(update={"kind": "ray", "address": address}))


def executor_from_env() -> Executor:
    """The executor named by ``LOOPGATE_EXECUTOR`` (default ``in-process``), with no spec."""
    return executor_for(None)
