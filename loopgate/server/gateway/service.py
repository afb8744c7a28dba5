"""The gateway's state in one process: loaded versions, routes, API keys (:mod:`.keys`) and the request log
(:mod:`.requestlog`); the shared types are in :mod:`.settings` (re-exported here).

It parses nothing and renders nothing (the routes in ``__init__`` do); every decision about a line — which
version answers, what the canary analysis concludes, what feedback is worth — is the service layer's
(:mod:`loopgate.loop.canary`, :mod:`loopgate.loop.feedback`).
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from typing import Any

import torch

from loopgate.errors import LoopgateError
from loopgate.loop import canary as canary_loop
from loopgate.loop import feedback as feedback_loop
from loopgate.loop.canary import LineState
from loopgate.loop.rules import rating_refusal
from loopgate.loop.workspace import Workspace
from loopgate.server.gateway.adapters import Bases, load_server
from loopgate.server.gateway.batching import VersionServer
from loopgate.server.gateway.decoding import Choice, Job
from loopgate.server.gateway.keys import Keys, TokenBucket
from loopgate.server.gateway.requestlog import RequestLog
from loopgate.server.gateway.settings import Caller, GatewayError, GatewaySettings, Target, render_template
from loopgate.server.gateway.upstream_client import Upstreams
from loopgate.spec import AppSpec, Tier
from loopgate.store.gateway import RequestRecord

ANALYSE_EVERY = 10  # new requests on a line with a live canary between two analyses from the log writer


class Gateway:
    """One process's gateway: what routes answer with, what they log, who may call."""

    def __init__(self, ws: Workspace, settings: GatewaySettings) -> None:
        self.ws, self.settings = ws, settings
        self.servers: dict[str, VersionServer] = {}
        self.upstreams = Upstreams(ws)  # lines with ``serving:`` are answered by their upstream server
        self._loading: dict[str, asyncio.Task[VersionServer]] = {}
        self.bases = Bases(settings.adapter_memory_mb, settings.max_batch, settings.max_wait_ms)  # shared bases
        self._states: dict[str, tuple[float, LineState]] = {}
        self._since_analysis: dict[str, int] = {}
        self.keys = Keys(ws, settings)
        self.requests = RequestLog(ws, settings, after_write=self._analyse)  # starts the log's writer thread

    # ------------------------------------------------------------------ guards

    def authorise(self, header: str | None, *, feedback: bool = False) -> Caller:
        """Who a request's bearer key belongs to (nobody when keys are not required); ``feedback`` also takes a
        token from the key's feedback bucket."""
        return self.keys.authorise(header, feedback=feedback)

    # ------------------------------------------------------------------ routing

    def target(self, model: str, key_app: str | None) -> Target:
        """Resolve ``model`` (an app, ``LINE`` or ``LINE:channel``); 404 for anything else."""
        name, _, channel = model.partition(":")
        spec = self.ws.eco.lines.get(name)
        if spec is None or (channel and channel not in ("production", "canary", "staging")):
            raise GatewayError(404, f"the model '{model}' does not exist; use an app name, a line or LINE:channel "
                               "(channel: production, canary or staging)", param="model", code="model_not_found")
        if key_app is not None and key_app != name:
            raise GatewayError(403, f"this API key is for '{key_app}', not '{name}'", "permission_error",
                               param="model", code="model_not_allowed")
        if spec.tier is Tier.app:
            if channel:
                raise GatewayError(404, f"'{name}' is an app; it serves its own channel — send model '{name}'",
                                   param="model", code="model_not_found")
            app = spec.app or AppSpec()
            assert spec.parent is not None
            return Target(name=name, line=spec.parent, channel=app.channel, app=name, template=app.prompt_template,
                          max_new_tokens=app.max_new_tokens, stop=tuple(app.stop))
        return Target(name=name, line=name, channel=channel or "production", app=None, template="{input}",
                      max_new_tokens=16, stop=(), split=not channel)

    def state(self, line: str) -> LineState:
        now = time.monotonic()
        hit = self._states.get(line)
        if hit is not None and now - hit[0] < self.settings.state_ttl_s:
            return hit[1]
        st = canary_loop.line_state(self.ws, line)
        self._states[line] = (now, st)
        return st

    def forget_state(self, line: str) -> None:
        self._states.pop(line, None)

    def route(self, target: Target, user: str, key_id: int | None = None) -> tuple[str, str, str | None]:
        """(version, channel, shadow version) answering this request of ``user`` with API key ``key_id``."""
        if target.channel != "production" or not target.split:
            version = self.ws.store.channel(target.line, target.channel)
            if version is None:
                raise GatewayError(404, f"line '{target.line}' has no {target.channel} version",
                                   param="model", code="model_not_found")
            return version, target.channel, None
        try:
            return canary_loop.pick(self.state(target.line), user, key_id)
        except LoopgateError as e:
            raise GatewayError(404, str(e), param="model", code="model_not_found") from None

    async def server(self, version: str) -> VersionServer:
        """The version's loaded model and queue, loaded once (in a worker thread) on first use; never one that
        was unloaded meanwhile."""
        while True:
            srv = self.servers.get(version)
            if srv is not None:
                return srv
            task = self._loading.get(version)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._load(version))
                self._loading[version] = task
            srv = await asyncio.shield(task)
            if not srv.closed:  # another load may have unloaded it before this coroutine resumed
                return srv

    async def _load(self, version: str) -> VersionServer:
        try:
            srv = await load_server(self.ws, self.bases, version, max_batch=self.settings.max_batch,
                                    max_wait_ms=self.settings.max_wait_ms)
        except Exception as e:  # a missing or corrupted artifact: answer 503 and try again on the next request
            self._loading.pop(version, None)
            raise GatewayError(503, f"{version} cannot be loaded: {e}", "server_error", code="model_unavailable"
                               ) from None
        self.servers[version] = srv
        self._loading.pop(version, None)
        await self._unload_beyond(self.settings.max_loaded, keep=version)
        return srv

    async def _unload_beyond(self, limit: int, *, keep: str) -> None:
        """Unload the least recently used versions with no request in flight until at most ``limit`` stay loaded:
        a gateway that lives through many releases would otherwise hold every version it ever served."""
        unloaded = 0
        # a version on a shared base holds no weights of its own: its adapter's memory is the bases' budget
        while sum(not s.shares_base for s in self.servers.values()) > limit:
            idle = [v for v, s in self.servers.items() if v != keep and s.inflight == 0 and not s.shares_base]
            if not idle:
                break  # all busy: over the limit until one is idle (the next load tries again)
            await self.servers.pop(min(idle, key=lambda v: self.servers[v].last_used)).close()
            unloaded += 1
        if unloaded:  # the closed servers dropped their models: collect them now, not at some later cycle
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # give the device memory back, not only to torch's cache

    # ------------------------------------------------------------------ answering

    async def answer(self, srv: VersionServer, job: Job) -> list[Choice]:
        """``job``'s choices from ``srv`` (loaded again if it was unloaded meanwhile), within the timeout."""
        while srv.closed:  # unloaded since it was handed out: load it again
            srv = await self.server(srv.version)
        srv.inflight += 1  # no await since the check above: it cannot be unloaded in between
        try:
            return await asyncio.wait_for(srv.submit(job), self.settings.timeout_s)
        except TimeoutError:
            raise GatewayError(504, f"the model did not answer within {self.settings.timeout_s:g} s; retry later",
                               "timeout", code="timeout") from None
        finally:
            srv.inflight -= 1
            srv.last_used = time.monotonic()

    def shadow(self, target: Target, version: str, prompt: str, max_new_tokens: int, stop: tuple[str, ...],
               user_hash: str | None) -> None:
        """Let ``version`` answer the same prompt in the background; its answer is logged, never returned."""
        async def run() -> None:
            t0 = time.perf_counter()
            rid = "shadow-" + uuid.uuid4().hex
            try:
                srv = await self.server(version)
                ids = srv.encode(prompt)
                g = (await self.answer(srv, Job(tuple(ids), max_new_tokens, stop)))[0]
                self.log(rid, target, version, "canary", t0, len(ids), len(g.token_ids), prompt, g.text,
                         user_hash=user_hash, shadow=True)
            except Exception as e:  # a failing shadow is an error the canary analysis counts
                self.log(rid, target, version, "canary", t0, 0, 0, prompt, None, user_hash=user_hash, shadow=True,
                         error=str(e) or type(e).__name__)

        task = asyncio.get_running_loop().create_task(run())
        task.add_done_callback(lambda _t: None)

    # ------------------------------------------------------------------ the request log

    def log(self, request_id: str, target: Target, version: str, channel: str, t0: float, prompt_tokens: int,
            output_tokens: int, prompt: str | None, output: str | None, *, user_hash: str | None,
            key_id: int | None = None, shadow: bool = False, error: str | None = None,
            seed: int | None = None) -> None:
        """Buffer one answer's record (:meth:`RequestLog.log`)."""
        self.requests.log(request_id, target, version, channel, t0, prompt_tokens, output_tokens, prompt, output,
                          user_hash=user_hash, key_id=key_id, shadow=shadow, error=error, seed=seed)

    def flush(self) -> None:
        """Write the buffered request log; analyse live canaries that have new traffic."""
        self.requests.flush()

    @property
    def _pending(self) -> list[RequestRecord]:
        return self.requests._pending

    def _analyse(self, written: list[RequestRecord]) -> None:
        """After a batch of the log is written: analyse each live canary with enough new traffic."""
        for r in written:
            self._since_analysis[r.line] = self._since_analysis.get(r.line, 0) + 1
        for line, n in list(self._since_analysis.items()):
            if n >= ANALYSE_EVERY and self.state(line).active:
                self._since_analysis[line] = 0
                canary_loop.analyse(self.ws, line, actor="gateway")
                self.forget_state(line)

    def feedback(self, request_id: str, score: float, label: str | None, comment: str | None, caller: Caller,
                 index: int | None = None) -> dict[str, Any]:
        """Rate one served answer: ``request_id``, or choice ``index`` of a request with several prompts. The
        latest rating of an answer is its rating; only the key that asked for an answer may rate it."""
        self.flush()  # the request may still be in the buffer
        req = None
        if index is not None:  # a request with several prompts logs one answer per choice: ID-INDEX
            req = feedback_loop.request(self.ws, f"{request_id}-{index}")
            request_id = req.id if req is not None else request_id
        if req is None and not index:
            req = feedback_loop.request(self.ws, request_id)
        if req is None or req.shadow:
            raise GatewayError(404, f"no request '{request_id}'" + (f" with choice {index}" if index else "")
                               + "; send the id a completion returned (and the choice's index)",
                               param="request_id", code="request_not_found")
        refused = rating_refusal(req, caller.app, caller.key_id)
        if refused is not None:
            raise GatewayError(403, refused, "permission_error", param="request_id")
        try:
            out = feedback_loop.add_feedback(self.ws, request_id, score, label=label, comment=comment,
                                             actor=f"gateway:{caller.app or 'anonymous'}", key_id=caller.key_id,
                                             per_key=self.settings.feedback_per_key)
        except LoopgateError as e:
            raise GatewayError(400, str(e), param="score") from None
        self.forget_state(req.line)
        body: dict[str, Any] = {"id": out.feedback.id, "object": "feedback", "request_id": request_id,
                                "version": out.feedback.version_id, "score": score,
                                "counted": out.feedback.counted}
        if out.canary is not None:
            body["canary"] = {"outcome": out.canary.outcome,
                              "verdict": out.canary.analysis.verdict.value if out.canary.analysis else None}
        return body

    def close(self) -> None:
        self.requests.close()


__all__ = ["ANALYSE_EVERY", "Caller", "Gateway", "GatewayError", "GatewaySettings", "Target", "TokenBucket",
           "render_template"]
