"""What the gateway's worker thread runs on a loaded model: a batch of :class:`Job` in, a list of :class:`Choice`
per job out — the answer's tokens, text, finish reason and, when asked, log-probabilities.

Greedy decoding is the evaluation engine's (left padding, KV cache, the same stop criterion), so a served
answer is the answer the gates measured. Sampling (``temperature`` > 0) runs one job per ``generate`` call
under a process-wide lock with its seed set first: the same seed gives the same answers, whatever else the
gateway is doing. Echoed prompts are scored by :mod:`loopgate.server.gateway.scoring`, one forward pass per
batch; for lm-eval's log-likelihood requests (``echo``, ``max_tokens`` ≤ 1, greedy) that pass also gives the
one answer token, so they cost nothing more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteriaList

# the engine's stop criterion and padding, not copies: a served answer must stop where an evaluated one does
from loopgate.evaluate.engine import _pad_id, _StopOnStrings, _truncate
from loopgate.server.gateway.scoring import Scored, TopK, score_prompts

_SAMPLING = threading.Lock()  # torch's generator is process-wide: one seeded sampling run at a time


@dataclass(frozen=True)
class Sampling:
    """``temperature`` > 0 and its ``top_p``, with the seed that makes the answers reproducible."""

    temperature: float
    top_p: float
    seed: int


@dataclass(frozen=True)
class Job:
    """One prompt (token ids) and how to answer it."""

    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    n: int = 1
    sampling: Sampling | None = None
    top_logprobs: int | None = None  # None: no log-probabilities; k ≥ 0: each token's and the k most likely
    echo: bool = False  # score the prompt's tokens too

    def group(self) -> tuple[Any, ...]:
        """Jobs with the same group are answered by one batched call; a sampled job is always alone."""
        alone = id(self) if self.sampling is not None else None
        return (self.max_new_tokens, self.stop, self.top_logprobs is not None, self.echo, alone)


@dataclass
class Choice:
    """One answer: generated token ids (an EOS that ended it included), their text (cut at a stop string)."""

    token_ids: list[int]
    text: str
    finish_reason: str
    latency_ms: float = 0.0
    logprobs: list[float] = field(default_factory=list)
    top: list[TopK] = field(default_factory=list)
    prompt: Scored | None = None  # the echoed prompt's scores


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    return {int(i) for i in [tokenizer.eos_token_id, *(gen_eos if isinstance(gen_eos, list) else [gen_eos])]
            if i is not None}


def _finish(tokenizer: Any, row: Sequence[int], eos: set[int], pad: int, max_new: int, stop: tuple[str, ...],
            steps: list[torch.Tensor] | None, k: int | None, r: int) -> Choice:
    """One generated row as a choice: cut at EOS (kept, it was generated), then at the first stop string."""
    ids: list[int] = []
    ended = False
    for tok in row:
        if tok in eos:
            ids.append(int(tok))
            ended = True
            break
        if tok == pad:
            break
        ids.append(int(tok))
    whole = str(tokenizer.decode(ids, skip_special_tokens=True))
    text = _truncate(whole, stop)
    stopped = ended or text != whole
    if text != whole:  # the tokens the stop string cut away are not part of the answer
        kept, seen = [], 0
        for tok in ids:
            if seen >= len(text):
                break
            kept.append(tok)
            seen += len(tokenizer.decode([tok], skip_special_tokens=True))
        ids = kept
    choice = Choice(ids, text, "stop" if stopped or len(ids) < max_new else "length")
    if steps is not None and k is not None:
        for t, tok in enumerate(ids):
            lp = steps[t][r].float().log_softmax(-1)
            choice.logprobs.append(float(lp[tok]))
            choice.top.append(_top(lp, k))
    return choice


def _top(lp: torch.Tensor, k: int) -> TopK:
    if k <= 0:
        return []
    vals, idx = lp.topk(min(k, lp.shape[-1]))
    return list(zip(idx.tolist(), vals.tolist(), strict=True))


def _generate(model: Any, tokenizer: Any, jobs: Sequence[Job], adapter_names: Sequence[str] | None = None
              ) -> list[list[Choice]]:
    """Greedy (a batch, left-padded as the engine does) or sampled (one job, ``n`` sequences) continuations."""
    job0 = jobs[0]
    pad, eos = _pad_id(tokenizer), _eos_ids(model, tokenizer)
    width = max(len(j.prompt_ids) for j in jobs)
    device = next(model.parameters()).device
    ids = torch.full((len(jobs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(jobs), width), dtype=torch.long)
    for r, j in enumerate(jobs):
        ids[r, width - len(j.prompt_ids):] = torch.tensor(j.prompt_ids)
        mask[r, width - len(j.prompt_ids):] = 1
    criteria = StoppingCriteriaList([_StopOnStrings(tokenizer, width, job0.stop, device)])
    kw: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    if job0.sampling is not None:
        kw = {"do_sample": True, "temperature": job0.sampling.temperature, "top_p": job0.sampling.top_p,
              "top_k": None, "num_return_sequences": job0.n}
    if adapter_names is not None:  # one name per row generate runs: a sampled job's n sequences are n rows
        kw["adapter_names"] = [a for a in adapter_names for _ in range(kw.get("num_return_sequences", 1))]
    want = job0.top_logprobs is not None
    with torch.inference_mode():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=1,
                             max_new_tokens=job0.max_new_tokens, pad_token_id=pad, eos_token_id=sorted(eos) or None,
                             stopping_criteria=criteria, return_dict_in_generate=True, output_logits=want, **kw)
    rows = out.sequences[:, width:].tolist()
    steps = list(out.logits) if want else None
    per = job0.n if job0.sampling is not None else 1
    result: list[list[Choice]] = []
    for r, j in enumerate(jobs):
        made = [_finish(tokenizer, rows[r * per + s], eos, pad, j.max_new_tokens, j.stop, steps, j.top_logprobs,
                        r * per + s) for s in range(per)]
        result.append(made if per == j.n else [_copy(made[0]) for _ in range(j.n)])
    return result


def _copy(c: Choice) -> Choice:
    return Choice(list(c.token_ids), c.text, c.finish_reason, c.latency_ms, list(c.logprobs), list(c.top), c.prompt)


def _from_scores(tokenizer: Any, model: Any, job: Job, scored: Scored) -> Choice:
    """The answer of a greedy ``max_tokens`` ≤ 1 echo job, read off the pass that scored its prompt."""
    if job.max_new_tokens == 0:
        return Choice([], "", "length", prompt=scored)
    tok, lp = scored.next_token
    eos = _eos_ids(model, tokenizer)
    whole = "" if tok in eos else str(tokenizer.decode([tok], skip_special_tokens=True))
    text = _truncate(whole, job.stop)
    choice = Choice([tok], text, "stop" if tok in eos or text != whole else "length", prompt=scored)
    if job.top_logprobs is not None:
        choice.logprobs, choice.top = [lp], [scored.next_top[: job.top_logprobs]]
    return choice


def answer(model: Any, tokenizer: Any, jobs: Sequence[Job], adapter_names: Sequence[str] | None = None
           ) -> list[list[Choice]]:
    """Every job's ``n`` choices (jobs of one group, see :meth:`Job.group`), in order; ``adapter_names`` names each
    job's adapter when ``model`` is a shared base with several (:mod:`loopgate.models.adapters`)."""
    t0 = time.perf_counter()
    job0 = jobs[0]
    scored: list[Scored] | None = None
    if job0.echo:
        scored = score_prompts(model, [j.prompt_ids for j in jobs], max(j.top_logprobs or 0 for j in jobs),
                               adapter_names)
    if scored is not None and (job0.max_new_tokens == 0 or (job0.max_new_tokens == 1 and job0.sampling is None)):
        result = [[_from_scores(tokenizer, model, j, s)] * j.n for j, s in zip(jobs, scored, strict=True)]
    elif job0.sampling is not None:
        with _SAMPLING:
            torch.manual_seed(job0.sampling.seed)
            result = _generate(model, tokenizer, jobs, adapter_names)
    else:
        result = _generate(model, tokenizer, jobs, adapter_names)
    ms = (time.perf_counter() - t0) * 1000 / len(jobs)
    for r, choices in enumerate(result):
        for c in choices:
            c.latency_ms = ms
            if scored is not None:
                c.prompt = scored[r]
    return result
