"""Answers as OpenAI's bodies: completion and chat choices, their ``logprobs`` objects and streamed chunks.

Completions' ``logprobs`` is the legacy shape lm-eval and vLLM use: ``tokens``, ``token_logprobs``,
``top_logprobs`` (one ``{token: logprob}`` per token, the chosen token always among them, ``null`` for the first
echoed prompt token, which nothing predicts) and ``text_offset``. Chat's is ``{"content": [{token, logprob, bytes,
top_logprobs: [{token, logprob, bytes}]}]}``. A token's text is its own decoding, so the tokens of an answer
join to its text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loopgate.server.gateway.decoding import Choice
from loopgate.server.gateway.scoring import TopK


@dataclass(frozen=True)
class Answered:
    """One choice as served: its id (for feedback), the prompt it answers and the choice."""

    choice_id: str
    prompt_text: str
    choice: Choice


def _text(tokenizer: Any, tok: int, *, special: bool) -> str:
    return str(tokenizer.decode([tok], skip_special_tokens=not special))


def _top_dict(tokenizer: Any, top: TopK, chosen: int, lp: float) -> dict[str, float]:
    out = {_text(tokenizer, t, special=True): v for t, v in top}
    out.setdefault(_text(tokenizer, chosen, special=True), lp)
    return out


def completion_logprobs(tokenizer: Any, a: Answered, echo: bool) -> dict[str, Any]:
    """The legacy ``logprobs`` object of one choice (the prompt's tokens first when echoed)."""
    tokens: list[str] = []
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    c = a.choice
    if echo and c.prompt is not None:
        for t, (tok, lp) in enumerate(zip(c.prompt.token_ids, c.prompt.logprobs, strict=True)):
            tokens.append(_text(tokenizer, tok, special=True))
            values.append(lp)
            tops.append(None if lp is None else _top_dict(tokenizer, c.prompt.top[t], tok, lp))
    for tok, lp, top in zip(c.token_ids, c.logprobs, c.top, strict=True):
        tokens.append(_text(tokenizer, tok, special=False))
        values.append(lp)
        tops.append(_top_dict(tokenizer, top, tok, lp))
    offsets, at = [], 0
    for s in tokens:
        offsets.append(at)
        at += len(s)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}


def _entry(tokenizer: Any, tok: int, lp: float) -> dict[str, Any]:
    s = _text(tokenizer, tok, special=False)
    return {"token": s, "logprob": lp, "bytes": list(s.encode("utf-8"))}


def chat_logprobs(tokenizer: Any, c: Choice) -> dict[str, Any]:
    """Chat's ``logprobs``: one entry per answer token with its ``top_logprobs`` alternatives."""
    return {"content": [{**_entry(tokenizer, tok, lp), "top_logprobs": [_entry(tokenizer, t, v) for t, v in top]}
                        for tok, lp, top in zip(c.token_ids, c.logprobs, c.top, strict=True)], "refusal": None}


def completion_choice(tokenizer: Any, i: int, a: Answered, *, echo: bool, logprobs: bool) -> dict[str, Any]:
    """One choice of a ``text_completion`` (``request_id``: the id to send feedback for)."""
    return {"index": i, "text": (a.prompt_text if echo else "") + a.choice.text,
            "logprobs": completion_logprobs(tokenizer, a, echo) if logprobs else None,
            "finish_reason": a.choice.finish_reason, "request_id": a.choice_id}


def chat_choice(tokenizer: Any, i: int, a: Answered, *, logprobs: bool) -> dict[str, Any]:
    """One choice of a ``chat.completion``."""
    return {"index": i, "message": {"role": "assistant", "content": a.choice.text, "refusal": None},
            "logprobs": chat_logprobs(tokenizer, a.choice) if logprobs else None,
            "finish_reason": a.choice.finish_reason, "request_id": a.choice_id}


def stream_events(head: dict[str, Any], choices: Sequence[dict[str, Any]], pieces: Sequence[Sequence[str]], *,
                  chat: bool, usage: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The chunks of a streamed answer: per choice its pieces, then its finish reason; with ``usage`` (the
    client sent ``stream_options.include_usage``) every chunk carries ``usage: null`` and a last chunk with no
    choices carries the usage. A choice with log-probabilities sends its text and them in one chunk."""
    obj = "chat.completion.chunk" if chat else "text_completion"
    events: list[dict[str, Any]] = []

    def chunk(choice: dict[str, Any]) -> None:
        events.append({**head, "object": obj, "choices": [choice], **({"usage": None} if usage else {})})

    for ch, parts in zip(choices, pieces, strict=True):
        i, lp = ch["index"], ch["logprobs"]
        if chat:
            chunk({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None})
        for piece in ([ch["message"]["content"] if chat else ch["text"]] if lp is not None else parts):
            body = {"delta": {"content": piece}} if chat else {"text": piece}
            chunk({"index": i, **body, "logprobs": lp, "finish_reason": None})
        last: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        chunk({"index": i, **last, "logprobs": None, "finish_reason": ch["finish_reason"],
               "request_id": ch["request_id"]})
    if usage:
        events.append({**head, "object": obj, "choices": [], "usage": usage})
    return events
