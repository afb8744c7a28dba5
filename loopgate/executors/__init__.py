"""Where jobs run. A job is a plain function of serialisable inputs (paths, recipes, suites) returning a
serialisable result (pydantic records); :mod:`loopgate.executors.jobs` lists them. The loop never calls a
job directly: it hands it to an executor, so the same orchestration runs them in this process (the default)
or, with :class:`~loopgate.executors.ray.RayExecutor`, as Ray tasks on a cluster. Acceptance — whether a
trained candidate is good enough — is decided by the loop between jobs, never inside one.
"""

from loopgate.executors.base import Executor, InProcessExecutor, JobHandle, executor_for, executor_from_env

__all__ = ["Executor", "InProcessExecutor", "JobHandle", "executor_for", "executor_from_env"]
