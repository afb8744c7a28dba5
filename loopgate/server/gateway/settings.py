"""What the gateway's parts share: its settings, the error a client caused, who called and what a request's
``model`` names."""

from __future__ import annotations

from dataclasses import dataclass


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


def render_template(template: str, text: str) -> str:
    # a plain replace, not str.format: braces in a user's text are text
    return template.replace("{input}", text)


def answer_length(asked: int | None, prompts: int, n: int, target: Target, settings: GatewaySettings) -> int:
    """The answer length a request gets (its own ``max_tokens``, else the line's), refused (400) over this
    gateway's limits: the longest answer, and prompts × ``n`` choices in one request. Served here and forwarded
    to an upstream alike."""
    max_new = target.max_new_tokens if asked is None else asked
    if max_new > settings.max_tokens:
        raise GatewayError(400, f"max_tokens {max_new} is over this gateway's limit of {settings.max_tokens}",
                           param="max_tokens", code="invalid_value")
    if prompts * n > settings.max_batch:
        raise GatewayError(400, f"{prompts} prompts × n {n} is over this gateway's limit of {settings.max_batch} "
                           "choices per request", param="n", code="invalid_value")
    return max_new
