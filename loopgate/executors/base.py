"""The executor interface and the in-process executor every caller goes through by default."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from loopgate.errors import LoopgateError

R = TypeVar("R")


class Executor(Protocol):
    """Runs one job and returns its result (re-raising its ``LoopgateError`` unchanged)."""

    name: str

    def run(self, job: Callable[..., R], /, **kwargs: Any) -> R: ...


class InProcessExecutor:
    """Runs each job in this process, now: the default, and what the tests use."""

    name = "in-process"

    def run(self, job: Callable[..., R], /, **kwargs: Any) -> R:
        return job(**kwargs)


def executor_from_env() -> Executor:
    """The executor named by ``LOOPGATE_EXECUTOR`` (default ``in-process``)."""
    name = os.environ.get("LOOPGATE_EXECUTOR", "in-process")
    if name == "in-process":
        return InProcessExecutor()
    raise LoopgateError(f"LOOPGATE_EXECUTOR={name!r} is not an executor Loopgate knows; use 'in-process'")
