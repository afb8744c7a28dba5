"""The gateway's state in one process: loaded versions, routes, API keys, token buckets and the request log buffer.

It parses nothing and renders nothing (the routes in ``__init__`` do); every decision about a line — which
version answers, what the canary analysis concludes, what feedback is worth — is the service layer's
(:mod:`loopgate.loop.canary`, :mod:`loopgate.loop.feedback`).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import torch

from loopgate.errors import LoopgateError
from loopgate.loop import canary as canary_loop
from loopgate.loop import feedback as feedback_loop
from loopgate.loop.canary import LineState
from loopgate.loop.workspace import Workspace
from loopgate.records import utcnow
from loopgate.server.gateway.adapters import Bases, load_server
from loopgate.server.gateway.batching import VersionServer
from loopgate.server.gateway.decoding import Choice, Job
from loopgate.server.gateway.upstream_client import Upstreams
from loopgate.spec import AppSpec, Tier
from loopgate.store.gateway import RequestRecord, key_sha256

ANALYSE_EVERY = 10  # new requests on a line with a live canary between two analyses from the log writer


@dataclass(frozen=True)
class GatewaySettings:
    """Guards and batching; ``loopgate serve`` sets them from its options."""

    require_keys: bool = True
    rate_per_s: float = 50.0  # token bucket per key: refill rate …
    burst: int = 100  # … and capacity
    max_request_bytes: int = 64 * 1024
    max_tokens: int = 256  # the most new tokens one request may ask for
    max_n: int = 8  # the most choices one request may ask for (``n`` × prompts is also capped by max_batch)
    max_logprobs: int = 20  # the most alternatives per token (``logprobs`` / ``top_logprobs``), as OpenAI's chat
    timeout_s: float = 30.0
    max_batch: int = 32
    max_wait_ms: float = 5.0
    flush_s: float = 0.2  # how often the request log is written
    state_ttl_s: float = 0.5  # how long a line's channels are cached between reads
    key_recheck_s: float = 5.0  # how long a key is trusted before the registry is asked again (revocation)
    max_loaded: int = 4  # versions kept loaded; the least recently used idle one is unloaded to load another
    # MiB of LoRA adapters loaded on shared bases (adapters.py); least recently used ones out beyond it (None: no cap)
    adapter_memory_mb: float | None = 1024.0
    # feedback abuse guards (#26 item 6), per API key: a token bucket for POST /v1/feedback (on top of the
    # request bucket) …
    feedback_rate_per_s: float = 2.0
    feedback_burst: int = 50
    # … and the most answers per version, since its canary went live, whose ratings the canary analysis counts
    # (None: no cap). One key alone cannot fill canary.min_samples then: a canary is not judged on one client's word
    feedback_per_key: int | None = 10


class GatewayError(Exception):
    """An error the client caused, rendered as OpenAI's error body with ``status``."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the app its API key belongs to and the key's id (both None when keys are off)."""

    app: str | None = None
    key_id: int | None = None


@dataclass(frozen=True)
class Target:
    """What a request's ``model`` names: an app (its template and decoding settings) or a line's channel."""

    name: str
    line: str
    channel: str
    app: str | None
    template: str
    max_new_tokens: int
    stop: tuple[str, ...]
    split: bool = True  # production traffic the live canary takes its share of (not for ``LINE:channel``)


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.capacity = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0 when a request may go now, else the seconds until one may."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


def render_template(template: str, text: str) -> str:
    # a plain replace, not str.format: braces in a user's text are text
    return template.replace("{input}", text)


class Gateway:
    def __init__(self, ws: Workspace, settings: GatewaySettings) -> None:
        self.ws, self.settings = ws, settings
        self.servers: dict[str, VersionServer] = {}
        self.upstreams = Upstreams(ws)  # lines with ``serving:`` are answered by their upstream server
        self._loading: dict[str, asyncio.Task[VersionServer]] = {}
        self.bases = Bases(settings.adapter_memory_mb, settings.max_batch, settings.max_wait_ms)  # shared bases
        self._states: dict[str, tuple[float, LineState]] = {}
        self._keys: dict[str, tuple[Caller, float]] = {}  # sha256 of a key → (its caller, when last checked)
        self._buckets: dict[str, TokenBucket] = {}
        self._feedback_buckets: dict[str, TokenBucket] = {}
        self._pending: list[RequestRecord] = []
        self._log_text: dict[str, str] = {}
        self._since_analysis: dict[str, int] = {}
        self._lock = threading.Lock()
        # held for a whole flush: a feedback that flushes must find its request written, not in another
        # thread's half-done flush
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="gateway-log", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ guards

    def authorise(self, header: str | None, *, feedback: bool = False) -> Caller:
        """Who a request's bearer key belongs to (nobody when keys are not required); ``feedback`` also takes a
        token from the key's feedback bucket."""
        if not self.settings.require_keys:
            return Caller()
        key = header[7:].strip() if header and header[:7].lower() == "bearer " else ""
        if not key:
            raise GatewayError(401, "no API key: send 'Authorization: Bearer KEY' (make one with `loopgate key "
                               "create APP`)", "authentication_error", code="invalid_api_key")
        digest = key_sha256(key)
        known = self._keys.get(digest)
        if known is not None and time.monotonic() - known[1] < self.settings.key_recheck_s:
            caller = known[0]
        else:  # asked again now and then, so a revoked key stops working on a running gateway
            found = feedback_loop.key_identity(self.ws, key)
            if found is None:
                self._keys.pop(digest, None)
                raise GatewayError(401, "unknown or revoked API key", "authentication_error", code="invalid_api_key")
            caller = Caller(app=found[1], key_id=found[0])
            self._keys[digest] = (caller, time.monotonic())
        limits = [(self._buckets, self.settings.rate_per_s, self.settings.burst, "requests")]
        if feedback:
            limits.append((self._feedback_buckets, self.settings.feedback_rate_per_s, self.settings.feedback_burst,
                           "feedback"))
        for buckets, rate, burst, what in limits:
            wait = buckets.setdefault(digest, TokenBucket(rate, burst)).take()
            if wait > 0:
                raise GatewayError(429, f"rate limit reached for this key ({rate:g} {what}/s, burst {burst}); "
                                   f"retry in {wait:.2f} s", "rate_limit_exceeded", code="rate_limit_exceeded",
                                   headers={"Retry-After": f"{max(1, round(wait))}"})
        return caller

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
        keep = self._log_text.get(target.line)
        if keep is None:  # the spec is read once per process: merging the policy per request costs real time
            keep = self._log_text[target.line] = self.ws.eco.policy_for(target.line).canary.log_text

        def kept(text: str | None) -> str | None:
            if text is None or keep == "off":
                return None
            return text if keep == "full" else "sha256:" + hashlib.sha256(text.encode(errors="replace")).hexdigest()

        rec = RequestRecord(id=request_id, app=target.app, line=target.line, version_id=version, channel=channel,
                            shadow=shadow, user_hash=user_hash, key_id=key_id, ok=error is None, error=error,
                            latency_ms=(time.perf_counter() - t0) * 1000, prompt_tokens=prompt_tokens,
                            output_tokens=output_tokens, prompt=kept(prompt), output=kept(output),
                            seed=seed, created_at=utcnow())
        with self._lock:
            self._pending.append(rec)

    def flush(self) -> None:
        """Write the buffered request log; analyse live canaries that have new traffic."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            recs, self._pending = self._pending, []
        if not recs:
            return
        try:
            feedback_loop.log_requests(self.ws, recs)  # one refused row does not lose the others (store.gateway)
        except Exception:
            with self._lock:  # the registry could not be written at all: keep the batch for the next flush
                self._pending[:0] = recs
            raise
        for r in recs:
            self._since_analysis[r.line] = self._since_analysis.get(r.line, 0) + 1
        for line, n in list(self._since_analysis.items()):
            if n >= ANALYSE_EVERY and self.state(line).active:
                self._since_analysis[line] = 0
                canary_loop.analyse(self.ws, line, actor="gateway")
                self.forget_state(line)

    def _write_loop(self) -> None:
        while not self._stop.wait(self.settings.flush_s):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a failed flush is retried with the next batch; keep serving
                import traceback

                traceback.print_exc()

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
        if caller.app is not None and caller.app not in (req.app, req.line):
            raise GatewayError(403, f"request '{request_id}' was not made with this key's app", "permission_error",
                               param="request_id")
        if caller.key_id is not None and req.key_id is not None and caller.key_id != req.key_id:
            raise GatewayError(403, f"request '{request_id}' was made with another API key; the key that asked for "
                               "an answer rates it", "permission_error", param="request_id")
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
        self._stop.set()
        self._writer.join(timeout=5)
        self.flush()
