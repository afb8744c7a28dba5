"""Dynamic batching: one queue per loaded version; concurrent requests are answered by one batched ``generate``.

The worker takes the first waiting request and whatever else is queued (up to ``max_batch``). When the
previous batch held more than one request — clients are arriving together — it waits up to ``max_wait_ms``
for as many as that batch held; a lone client (the previous batch was one request) never waits, so batching
costs nothing at concurrency 1. On a shared base (:mod:`loopgate.server.gateway.adapters`) each request names
its adapter and one batch mixes adapters row by row. Requests in a batch that differ in ``max_new_tokens``,
stop strings, log-probs or echo are split into groups (:meth:`~loopgate.server.gateway.decoding.Job.group`), each one
:func:`~loopgate.server.gateway.decoding.answer` call; a sampled request is a group of its own. The model
runs in one worker thread per version, so the event loop keeps accepting requests while a batch generates.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from loopgate.evaluate.engine import Generation
from loopgate.models.adapters import AdapterSlot
from loopgate.server.gateway.decoding import Choice, Job, answer


@dataclass
class _Item:
    job: Job
    future: asyncio.Future[list[Choice]]
    adapter: AdapterSlot | None = None  # the row's adapter on a shared base; None: the loaded model itself


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    sizes: list[int] = field(default_factory=list)


class VersionServer:
    """A loaded version and its batching queue (create it inside the running event loop)."""

    def __init__(self, version: str, model: Any, tokenizer: Any, *, max_batch: int = 32, max_wait_ms: float = 5.0
                 ) -> None:
        self.version = version
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.max_positions = int(getattr(getattr(model, "config", None), "max_position_embeddings", 0) or 0)
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.stats = BatchStats()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{version}")
        self._task: asyncio.Task[None] | None = None
        self._last_batch = 1
        self.inflight = 0  # requests being answered (counted by the gateway): a version with any stays loaded
        self.last_used = time.monotonic()
        self.closed = False
        self.shares_base = False  # a handle on a shared base (adapters.py): light, not counted by max_loaded

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def encode(self, text: str) -> list[int]:
        """The token ids the model reads for ``text`` (special tokens added as the evaluation engine adds them)."""
        return list(self.tokenizer(text)["input_ids"])

    async def submit(self, job: Job, adapter: AdapterSlot | None = None) -> list[Choice]:
        """``job``'s choices, answered in a batch with whatever else is waiting (on ``adapter``, for a shared base)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._worker())
        fut: asyncio.Future[list[Choice]] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Item(job, fut, adapter))
        return await fut

    async def generate(self, prompt: str, *, max_new_tokens: int, stop: tuple[str, ...]) -> Generation:
        """The greedy continuation of ``prompt``, generated in a batch with whatever else is waiting."""
        c = (await self.submit(Job(tuple(self.encode(prompt)), max_new_tokens, stop)))[0]
        return Generation(c.text, len(c.token_ids), c.latency_ms)

    async def _collect(self) -> list[_Item]:
        batch = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.max_wait_s if self._last_batch > 1 else 0.0)
        want = min(self.max_batch, max(self._last_batch, 1))
        while len(batch) < self.max_batch:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - loop.time()
            if len(batch) >= want or left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [i for i in await self._collect() if not i.future.done()]  # a timed-out client is gone
            if not batch:
                continue
            self._last_batch = len(batch)
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.sizes.append(len(batch))
            groups: dict[tuple[Any, ...], list[_Item]] = {}
            for item in batch:
                groups.setdefault(item.job.group(), []).append(item)
            for items in groups.values():
                try:
                    gens = await loop.run_in_executor(self._pool, self._run, [i.job for i in items],
                                                      [i.adapter for i in items])
                except Exception as e:  # the model failed: every request of the group gets the error
                    for i in items:
                        if not i.future.done():
                            i.future.set_exception(e)
                    continue
                for i, g in zip(items, gens, strict=True):
                    if not i.future.done():
                        i.future.set_result(g)

    def _run(self, jobs: list[Job], adapters: list[AdapterSlot | None]) -> list[list[Choice]]:
        return answer(self.model, self.tokenizer, jobs)

    async def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._task
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.model = None  # the weights go with the last reference: the gateway unloads versions it no longer uses
