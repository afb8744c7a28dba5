"""Loading versions for the gateway: a full version gets its own model and queue; every adapter version on one base
shares that base (:class:`~loopgate.models.adapters.SharedBase`) and its one queue, so requests for different
adapter lines — and their canaries — are answered by one batched ``generate`` with an adapter per row.

Adapters are never merged. The shared base's worker thread is the only one that touches its model: it loads the
adapters a batch needs just before running it and unloads the least recently used ones when the adapters
together exceed ``--adapter-memory``. A full version whose folder is already loaded as a shared base is served
from it too (rows on ``"__base__"``), not loaded a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from loopgate.loop.versions import version_key, version_ref
from loopgate.loop.workspace import Workspace
from loopgate.models.adapters import AdapterSlot, SharedBase, adapter_name
from loopgate.models.io import load_model
from loopgate.server.gateway.batching import BatchStats, VersionServer
from loopgate.server.gateway.decoding import Choice, Job, answer

MIB = 1024 * 1024


class SharedBaseServer(VersionServer):
    """A base model and the adapters on it behind one batching queue: each queued request names its adapter."""

    def __init__(self, shared: SharedBase, *, max_batch: int, max_wait_ms: float) -> None:
        super().__init__(f"shared:{shared.base.name}", shared.model, shared.tokenizer, max_batch=max_batch,
                         max_wait_ms=max_wait_ms)
        self.shared = shared
        self.mixed: list[int] = []  # how many adapters (the base counting as one) each batch mixed

    def _run(self, jobs: list[Job], adapters: list[AdapterSlot | None]) -> list[list[Choice]]:
        names = self.shared.ensure(adapters)  # in the worker thread: nothing else touches the model meanwhile
        self.mixed.append(len(set(names)))
        model = self.shared.model
        per_row = names if self.shared.wrapped else None  # no adapter loaded yet: the plain base
        return answer(model, self.tokenizer, jobs, per_row)


class AdapterServer(VersionServer):
    """One version served from a shared base: its adapter (None: the base itself) and the base's queue."""

    def __init__(self, version: str, base: SharedBaseServer, slot: AdapterSlot | None) -> None:
        # no queue or thread of its own (VersionServer's are not built): requests go to the shared base's
        self.version, self.base, self.slot = version, base, slot
        self.model, self.tokenizer, self.max_positions = None, base.tokenizer, base.max_positions
        self.stats = BatchStats()
        self.inflight = 0
        self.last_used = time.monotonic()
        self.shares_base = True
        self._closed = False

    @property  # type: ignore[override]  # VersionServer's plain attribute, here also closed with its base
    def closed(self) -> bool:
        return self._closed or self.base.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self._closed = value

    async def submit(self, job: Job, adapter: AdapterSlot | None = None) -> list[Choice]:
        self.stats.items += 1
        return await self.base.submit(job, self.slot)

    async def close(self) -> None:
        self._closed = True  # the shared base stays: other versions use it


class Bases:
    """The shared bases loaded in this gateway, by base folder; each loaded once, even when asked for at once.

    ``budget_mib`` 0 turns sharing off: each adapter version is merged into its own copy of its base (the
    per-version path, counted by ``max_loaded``); None loads adapters without a cap."""

    def __init__(self, budget_mib: float | None, max_batch: int, max_wait_ms: float) -> None:
        self.enabled = budget_mib != 0
        self.budget = None if budget_mib is None else int(budget_mib * MIB)
        self.max_batch, self.max_wait_ms = max_batch, max_wait_ms
        self._tasks: dict[Path, asyncio.Task[SharedBaseServer]] = {}

    def loaded(self, base: Path) -> bool:
        task = self._tasks.get(base)
        return task is not None and task.done() and not task.cancelled() and task.exception() is None

    def servers(self) -> list[SharedBaseServer]:
        return [t.result() for b, t in self._tasks.items() if self.loaded(b)]

    async def get(self, base: Path) -> SharedBaseServer:
        task = self._tasks.get(base)
        if task is None:
            task = self._tasks[base] = asyncio.get_running_loop().create_task(self._load(base))
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._tasks.get(base) is task:
                del self._tasks[base]  # a failed load is tried again on the next request
            raise

    async def _load(self, base: Path) -> SharedBaseServer:
        shared = await asyncio.to_thread(SharedBase, base, budget_bytes=self.budget)
        return SharedBaseServer(shared, max_batch=self.max_batch, max_wait_ms=self.max_wait_ms)

    async def close(self) -> None:
        for srv in self.servers():
            await srv.close()
        for task in self._tasks.values():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()


async def load_server(ws: Workspace, bases: Bases, version: str, *, max_batch: int, max_wait_ms: float
                      ) -> VersionServer:
    """The server that answers for ``version``: a handle on its base's shared server for an adapter version (or a
    full version whose folder is a loaded shared base), else the version's own model and queue."""
    ref = await asyncio.to_thread(version_ref, ws, version)
    if not bases.enabled or (ref.adapter is None and not bases.loaded(ref.base)):
        loaded = await asyncio.to_thread(load_model, ref)
        return VersionServer(version, loaded.model, loaded.tokenizer, max_batch=max_batch, max_wait_ms=max_wait_ms)
    shared = await bases.get(ref.base)
    slot = None
    if ref.adapter is not None:
        key = await asyncio.to_thread(version_key, ws, version)
        slot = AdapterSlot(adapter_name(version, key), ref.adapter)
        await asyncio.to_thread(shared.shared.check, slot)  # a broken adapter fails its own load, not a batch
    return AdapterServer(version, shared, slot)
