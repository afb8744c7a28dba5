"""Scoring a version through the OpenAI-compatible server that serves it (a line's ``serving:``), so what is gated
is what is served: the suite's prompts (rendered exactly as the in-process engine renders them, with the version's
own tokenizer) are sent to ``/completions`` greedily (temperature 0) with the suite's ``max_new_tokens`` and
stops, and the answers are scored by the same scorers.

Only suites answered by generation (``generation``, ``safety``) can be scored this way: a choice, perplexity or
lm-eval suite needs log-likelihoods, which not every server gives. The evaluation is a different one from the
in-process evaluation of the same weights, and says so: its suite identity (hence the registry's key and the
cache key) includes the upstream's URL and model name, and ``Evaluation.upstream`` names them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from loopgate.errors import DataError
from loopgate.evaluate.engine import engine_version
from loopgate.evaluate.metrics import wilson_interval
from loopgate.evaluate.scorers import generation_scores, refusal_detector, safety_correct
from loopgate.evaluate.suites import GenerationRow, SafetyRow, Suite, suite_prompts
from loopgate.hashing import sha256_json
from loopgate.records import Evaluation, ExampleResult

CHUNK = 16  # prompts per request: a list prompt is one batch on vLLM and on ``loopgate serve`` (max_batch 32)


@dataclass(frozen=True)
class UpstreamModel:
    """One model on an OpenAI-compatible server: where, under which name, with which key."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 30.0

    def describe(self) -> str:
        return f"{self.model} at {self.base_url}"


def through_upstream(suite: Suite, upstream: UpstreamModel) -> Suite:
    """``suite`` as scored through ``upstream``: its identity carries the server and model name, so neither the
    registry nor the cache can return an in-process score for it (or the reverse)."""
    if suite.spec.scorer in ("judge", "classifier"):
        raise DataError(f"suite '{suite.name}' is graded by a {suite.spec.scorer} model; evaluate it in-process "
                        "(without --through-upstream)")
    if suite.kind not in ("generation", "safety"):
        raise DataError(f"suite '{suite.name}' ({suite.kind}) needs log-likelihoods and cannot be scored through "
                        "an upstream server; evaluate it in-process (without --through-upstream)")
    return replace(suite, sha256=sha256_json({"suite": suite.sha256, "upstream": {"base_url": upstream.base_url,
                                                                                    "model": upstream.model}}))


def _cut(text: str, stops: Sequence[str]) -> str:
    # the engine's rule (engine._truncate): a server that ignores ``stop`` still yields the same answer
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


def _answers(client: Any, upstream: UpstreamModel, prompts: list[str], suite: Suite) -> list[tuple[str, int, float]]:
    """(answer, output tokens, amortised latency ms) per prompt, asked CHUNK prompts per request."""
    import httpx

    spec, out = suite.spec, []
    for i in range(0, len(prompts), CHUNK):
        chunk = prompts[i:i + CHUNK]
        body: dict[str, Any] = {"model": upstream.model, "prompt": chunk, "max_tokens": spec.max_new_tokens,
                                "temperature": 0.0}
        if [s for s in spec.stop if s]:
            body["stop"] = [s for s in spec.stop if s][:4]
        t0 = time.perf_counter()
        try:
            r = client.post("completions", json=body)
            data = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise DataError(f"{upstream.describe()} could not be asked ({type(e).__name__}: {e}); is it up?") from None
        if r.status_code != 200 or not isinstance(data, dict) or len(data.get("choices") or []) != len(chunk):
            raise DataError(f"{upstream.describe()} answered {r.status_code}: {r.text[:300]}")
        ms = (time.perf_counter() - t0) * 1000 / len(chunk)
        choices = sorted(data["choices"], key=lambda c: int(c.get("index", 0)))
        done = int((data.get("usage") or {}).get("completion_tokens") or 0)
        out += [(_cut(str(c.get("text") or ""), spec.stop), done // len(chunk), ms) for c in choices]
    return out


def evaluate_upstream(suite: Suite, tokenizer: Any, upstream: UpstreamModel, *, version: str) -> Evaluation:
    """Score ``suite`` (from :func:`through_upstream`) on what ``upstream`` answers; ``tokenizer`` is the
    version's own, rendering chat rows as the in-process engine does."""
    import httpx

    headers = {"Authorization": f"Bearer {upstream.api_key}"} if upstream.api_key else {}
    prompts = suite_prompts(suite, tokenizer)
    t0 = time.perf_counter()
    with httpx.Client(base_url=upstream.base_url.rstrip("/") + "/", timeout=upstream.timeout_s,
                      headers=headers) as client:
        got = _answers(client, upstream, prompts, suite)
    texts = [g[0] for g in got]
    examples: list[ExampleResult] = []
    metrics: dict[str, float] = {}
    if suite.kind == "generation":
        rows = [r for r in suite.rows if isinstance(r, GenerationRow)]
        scores = generation_scores(suite.name, suite.spec, rows, prompts, texts, None)
        examples = [ExampleResult(id=r.id, prompt=p, output=g[0], correct=v >= 0.5, score=v, output_tokens=g[1],
                                  latency_ms=g[2]) for r, p, g, v in zip(rows, prompts, got, scores, strict=True)]
    else:
        srows = [r for r in suite.rows if isinstance(r, SafetyRow)]
        refused = refusal_detector(suite.spec).refusals(prompts, texts)
        examples = [ExampleResult(id=r.id, prompt=p, output=g[0], correct=safety_correct(ref, r.expect),
                                  score=float(safety_correct(ref, r.expect)), expect=r.expect, refused=ref,
                                  category=r.category, output_tokens=g[1], latency_ms=g[2])
                    for r, p, g, ref in zip(srows, prompts, got, refused, strict=True)]
    n, correct = len(examples), sum(e.correct for e in examples)
    low, high = wilson_interval(correct, n)
    metrics["accuracy"] = score = correct / n if n else 0.0
    metrics["wall_s"] = time.perf_counter() - t0
    return Evaluation(version=version, suite=suite.name, suite_sha256=suite.sha256, kind=suite.kind, n=n,
                      score=score, ci_low=low, ci_high=high, examples=examples, metrics=metrics,
                      engine_version=engine_version(), device="upstream", upstream=upstream.describe())
