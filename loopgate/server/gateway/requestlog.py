"""The request log: records buffered per request and written in batches by a background thread (and before a
feedback reads them); after each batch the gateway is told which lines had traffic."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from loopgate.loop import feedback as feedback_loop
from loopgate.loop.workspace import Workspace
from loopgate.records import utcnow
from loopgate.server.gateway.settings import GatewaySettings, Target
from loopgate.store.gateway import RequestRecord


class RequestLog:
    """The buffer, its writer thread, and ``after_write`` (called with each batch written, under the flush lock)."""

    def __init__(self, ws: Workspace, settings: GatewaySettings,
                 after_write: Callable[[list[RequestRecord]], None]) -> None:
        self.ws, self.settings, self.after_write = ws, settings, after_write
        self._pending: list[RequestRecord] = []
        self._log_text: dict[str, str] = {}
        self._lock = threading.Lock()
        # held for a whole flush: a feedback that flushes must find its request written, not in another
        # thread's half-done flush
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="gateway-log", daemon=True)
        self._writer.start()

    def log(self, request_id: str, target: Target, version: str, channel: str, t0: float, prompt_tokens: int,
            output_tokens: int, prompt: str | None, output: str | None, *, user_hash: str | None,
            key_id: int | None = None, shadow: bool = False, error: str | None = None,
            seed: int | None = None) -> None:
        """Buffer one answer's record, its texts kept as the line's ``canary.log_text`` says (full, a hash, off)."""
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
        self.after_write(recs)

    def _write_loop(self) -> None:
        while not self._stop.wait(self.settings.flush_s):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a failed flush is retried with the next batch; keep serving
                import traceback

                traceback.print_exc()

    def close(self) -> None:
        """Stop the writer thread and write what is left."""
        self._stop.set()
        self._writer.join(timeout=5)
        self.flush()
