"""What a completion or chat request asks of a loaded version, checked: its prompts as token ids, how many new
tokens, stop strings, ``n``, sampling, log-probabilities and echo — as one :class:`Plan` of decoding jobs.

Every check here is the client's error (a 400 in OpenAI's body), raised before the model runs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from loopgate.server.gateway.batching import VersionServer
from loopgate.server.gateway.decoding import Job, Sampling
from loopgate.server.gateway.schemas import MAX_STOPS, ChatRequest, CompletionRequest
from loopgate.server.gateway.service import GatewayError, GatewaySettings, Target, render_template
from loopgate.server.gateway.settings import answer_length


@dataclass(frozen=True)
class Plan:
    """The prompts (text for the log and echo, ids for the model) and one job per prompt."""

    texts: list[str]
    jobs: list[Job]
    seed: int | None  # the seed sampled answers used (the client's or one drawn here), for reproducing them

    @property
    def prompt_tokens(self) -> int:
        return sum(len(j.prompt_ids) for j in self.jobs)


def _bad(message: str, param: str, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def check_body(body: CompletionRequest | ChatRequest, settings: GatewaySettings, chat: bool) -> None:
    """The checks that need no model: stop list, ``n``, log-probabilities, ``response_format``, ``max_tokens``."""
    stops = [body.stop] if isinstance(body.stop, str) else (body.stop or [])
    if len(stops) > MAX_STOPS:
        raise _bad(f"stop: give at most {MAX_STOPS} stop strings, got {len(stops)}", "stop")
    if body.n > settings.max_n:
        raise _bad(f"n {body.n} is over this gateway's limit of {settings.max_n} choices per request", "n")
    k = body.top_logprobs if isinstance(body, ChatRequest) else body.logprobs
    if k is not None and k > settings.max_logprobs:
        name = "top_logprobs" if chat else "logprobs"
        raise _bad(f"{name} {k} is over this gateway's limit of {settings.max_logprobs}", name)
    if isinstance(body, ChatRequest) and body.top_logprobs is not None and not body.logprobs:
        raise _bad("top_logprobs needs logprobs: true", "top_logprobs")
    kind = (body.response_format or {}).get("type", "text")
    if kind != "text":
        raise _bad(f"response_format {kind!r} is not supported: this gateway answers with the model's text as "
                   "generated and cannot constrain it to a format; leave response_format out or send "
                   '{"type": "text"}', "response_format", "unsupported_value")
    if body.max_tokens == 0 and not (isinstance(body, CompletionRequest) and body.echo):
        raise _bad("max_tokens 0 is only for echo: true (score the prompt, answer nothing)", "max_tokens")


def _raw_prompts(body: CompletionRequest, srv: VersionServer, target: Target, max_batch: int
                 ) -> tuple[list[str], list[list[int]]]:
    raw: Any = body.prompt
    if isinstance(raw, list) and raw and isinstance(raw[0], int):
        raw = [raw]  # one prompt as token ids
    raw = raw if isinstance(raw, list) else [raw]
    if not raw or len(raw) > max_batch:
        raise _bad(f"prompt: give a string or a list of 1 to {max_batch} strings (or token-id lists)", "prompt")
    if all(isinstance(p, str) for p in raw):
        texts = [render_template(target.template, p) for p in raw]
        return texts, [srv.encode(t) for t in texts]
    vocab = len(srv.tokenizer)
    if target.template != "{input}":
        raise _bad(f"'{target.name}' is an app with a prompt template: send text, not token ids", "prompt")
    if any(not p or any(not 0 <= t < vocab for t in p) for p in raw):
        raise _bad(f"prompt: every token-id list must be non-empty, with ids in [0, {vocab})", "prompt",
                   "empty_prompt" if any(not p for p in raw) else "invalid_value")
    return [str(srv.tokenizer.decode(p)) for p in raw], [list(p) for p in raw]


def _chat_prompt(body: ChatRequest, srv: VersionServer, target: Target) -> tuple[list[str], list[list[int]]]:
    if not getattr(srv.tokenizer, "chat_template", None):
        raise _bad(f"the model behind '{body.model}' ({srv.version}) has no chat template; use /v1/completions, "
                   "or register a tokenizer with a chat_template", "messages", "no_chat_template")
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    text = render_template(target.template, str(srv.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)))
    return [text], [srv.encode(text)]


def _sampling(body: CompletionRequest | ChatRequest) -> Sampling | None:
    if not body.temperature:  # omitted or 0: greedy, as the gates measured
        return None
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    return Sampling(temperature=body.temperature, top_p=body.top_p or 1.0, seed=seed)


def plan(body: CompletionRequest | ChatRequest, srv: VersionServer, target: Target, settings: GatewaySettings,
         chat: bool) -> Plan:
    """The jobs answering ``body`` on ``srv``; a 400 for what the model cannot take."""
    if isinstance(body, ChatRequest):
        texts, ids = _chat_prompt(body, srv, target)
        k = (body.top_logprobs or 0) if body.logprobs else None
        echo, asked = False, body.max_completion_tokens or body.max_tokens
    else:
        texts, ids = _raw_prompts(body, srv, target, settings.max_batch)
        k, echo, asked = body.logprobs, body.echo, body.max_tokens
    if not all(texts) or not all(ids):  # an app template of just "{input}", a chat template rendering nothing
        raise _bad("the prompt is empty", "messages" if chat else "prompt", "empty_prompt")
    max_new = answer_length(asked, len(ids), body.n, target, settings)
    longest = max(len(p) for p in ids)
    if srv.max_positions and longest + max_new > srv.max_positions:
        raise _bad(f"this model's context is {srv.max_positions} tokens; the prompt has {longest} and max_tokens "
                   f"asks for {max_new}", "prompt", "context_length_exceeded")
    stop = body.stops()
    sampling = _sampling(body)
    jobs = [Job(tuple(p), max_new, target.stop if stop is None else stop, body.n, sampling, k, echo) for p in ids]
    return Plan(texts, jobs, sampling.seed if sampling else None)
