"""The request bodies the gateway accepts (OpenAI's shapes) and its error body.

Fields OpenAI clients send that a greedy local engine has no use for (``temperature``, ``top_p``,
``presence_penalty``, ...) are accepted and ignored; the gateway decodes greedily, as the gates measured.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_STOPS = 4  # as OpenAI


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Generation(_Body):
    model: str = Field(min_length=1, max_length=300)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    user: str | None = Field(None, max_length=500)
    n: int = Field(1, ge=1, le=1)  # one choice per request: ask again for more

    def stops(self) -> tuple[str, ...] | None:
        if self.stop is None:
            return None
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        return tuple(s for s in stops if s)


class CompletionRequest(_Generation):
    prompt: str | list[str]


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
