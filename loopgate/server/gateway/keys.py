"""API keys: who a request's bearer key belongs to (asked of the registry again now and then, so a revoked key
stops working on a running gateway) and a token bucket per key for requests and for feedback."""

from __future__ import annotations

import threading
import time

from loopgate.loop import feedback as feedback_loop
from loopgate.loop.workspace import Workspace
from loopgate.server.gateway.settings import Caller, GatewayError, GatewaySettings
from loopgate.store.gateway import key_sha256


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


class Keys:
    """The keys a gateway has seen, with their callers and buckets."""

    def __init__(self, ws: Workspace, settings: GatewaySettings) -> None:
        self.ws, self.settings = ws, settings
        self._keys: dict[str, tuple[Caller, float]] = {}  # sha256 of a key → (its caller, when last checked)
        self._buckets: dict[str, TokenBucket] = {}
        self._feedback_buckets: dict[str, TokenBucket] = {}

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
