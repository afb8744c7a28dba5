"""Long verbs off the request thread: ``POST …/update`` trains for minutes, longer than a client or a proxy waits.

A job runs on the API's one worker thread (one mutating verb at a time, as the request routes), and its handle
lives in this process's memory (the last ``KEEP`` jobs): ``GET /api/v1/jobs/{id}`` polls it. What the job does is
recorded where it always is — the update's run, versions, decisions and ledger entries in the registry — so a
server stopped mid-job loses only the handle: ``loopgate resume`` finishes the run it started. Written here
rather than taken from a task queue (Celery, RQ, Ray jobs) because one in-process worker is all a single
``loopgate serve`` needs and the registry already holds the durable state.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from loopgate.errors import LoopgateError, NotFoundError
from loopgate.loop.outcomes import ReleaseOutcome
from loopgate.records import utcnow

KEEP = 200  # finished jobs kept for polling; the oldest finished one goes first
log = logging.getLogger("loopgate.api.jobs")


class Job(BaseModel):
    id: str
    kind: Literal["update"]
    subject: str  # the line
    requested_by: str
    state: Literal["queued", "running", "succeeded", "failed"] = "queued"
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: ReleaseOutcome | None = None  # when it succeeded: what the CLI prints with --json
    error: str | None = None  # when it failed: the CLI's message


class JobRunner:
    """One daemon worker thread taking jobs in order; ``lock`` is the API's lock for mutating verbs."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._work: dict[str, Callable[[], ReleaseOutcome]] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._guard = threading.Lock()  # the job table, between request threads and the worker
        # a daemon: a server that stops mid-update does not wait minutes for it (the run is resumable)
        self._thread = threading.Thread(target=self._loop, name="loopgate-api-jobs", daemon=True)
        self._thread.start()

    def submit(self, kind: Literal["update"], subject: str, requested_by: str,
               work: Callable[[], ReleaseOutcome]) -> Job:
        job = Job(id=uuid.uuid4().hex[:16], kind=kind, subject=subject, requested_by=requested_by,
                  created_at=utcnow())
        with self._guard:
            self._jobs[job.id] = job
            self._work[job.id] = work
            self._forget_old()
        self._queue.put(job.id)
        return job.model_copy()

    def get(self, job_id: str) -> Job:
        with self._guard:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFoundError(f"no job {job_id} on this server (jobs are kept in memory, the last {KEEP}; "
                                    "a finished update is in the registry either way: see the line's versions)")
            return job.model_copy()

    def jobs(self) -> list[Job]:
        """Newest first."""
        with self._guard:
            return [j.model_copy() for j in reversed(self._jobs.values())]

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state in ("succeeded", "failed")]
        for k in finished[: max(0, len(self._jobs) - KEEP)]:
            del self._jobs[k]

    def _set(self, job_id: str, **changes: object) -> None:
        with self._guard:
            job = self._jobs[job_id]
            self._jobs[job_id] = job.model_copy(update=changes)

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            with self._guard:
                work = self._work.pop(job_id)
            self._set(job_id, state="running", started_at=utcnow())
            try:
                with self._lock:
                    result = work()
            except LoopgateError as e:  # the user's error, worded as the CLI words it
                self._set(job_id, state="failed", error=str(e), finished_at=utcnow())
            except Exception as e:  # a defect: the job says so, the server goes on
                log.exception("job %s failed", job_id)
                self._set(job_id, state="failed", error=f"internal error: {type(e).__name__}: {e}",
                          finished_at=utcnow())
            else:
                self._set(job_id, state="succeeded", result=result, finished_at=utcnow())
