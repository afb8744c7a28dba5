"""The request bodies the gateway accepts (OpenAI's shapes) and its error body.

Decoding is greedy, as the gates measured, unless a request sets ``temperature`` > 0: then it samples with
``temperature``, ``top_p`` and ``seed``. Fields a local engine has no use for (``presence_penalty``,
``frequency_penalty``, ...) are accepted and ignored; ``response_format`` other than text is refused, not
ignored (the gateway cannot constrain an answer to a format).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_STOPS = 4  # as OpenAI


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Body):
    include_usage: bool = False


class _Generation(_Body):
    model: str = Field(min_length=1, max_length=300)
    max_tokens: int | None = Field(None, ge=0)  # 0: no answer, for ``echo`` (lm-eval's log-likelihood requests)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=500)
    n: int = Field(1, ge=1)  # at most GatewaySettings.max_n
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, lt=2**63)
    response_format: dict[str, Any] | None = None

    def stops(self) -> tuple[str, ...] | None:
        if self.stop is None:
            return None
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        return tuple(s for s in stops if s)


class CompletionRequest(_Generation):
    # a string, a list of strings, token ids, or a list of token-id lists (lm-eval's tokenized_requests)
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0)  # alternatives per token, at most GatewaySettings.max_logprobs


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        # OpenAI's content parts: only text parts carry text a language model can read
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class ChatRequest(_Generation):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0)


class FeedbackRequest(_Body):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=64)
    index: int | None = Field(None, ge=0, le=1024)  # the choice, for a request that sent several prompts
    score: float
    label: str | None = Field(None, max_length=200)
    comment: str | None = Field(None, max_length=4000)


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
