"""Release metrics, each defined once (DESIGN.md § Metrics) and tested against a hand-computed case.

Scores, flips and tests are computed on per-example correctness (``ExampleResult.correct``) of examples
joined by id, so that two versions are always compared on exactly the same items.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import NormalDist

import numpy as np
from pydantic import BaseModel

from loopgate.records import Evaluation, ExampleResult

# --------------------------------------------------------------------------- score with a CI


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when there is no data."""
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the interval always contains p; rounding alone can leave p = 1 a hair above the upper bound
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def bootstrap_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (deterministic for a given ``seed``).

    Raises ``ValueError`` on an empty sample: an interval of nothing is a bug in the caller.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


# --------------------------------------------------------------------------- paired comparison


# kinds whose score falls as the version gets better (bits per byte); their paired delta is before − after
LOWER_IS_BETTER = frozenset({"perplexity"})
# an evaluation's metrics flag: its examples' scores are partial credit (a python scorer's floats), so two versions
# are compared on mean score, not on the count of correct examples
GRADED = "graded"


def compares_scores(evaluation: Evaluation) -> bool:
    """Whether paired comparisons read the examples' ``score`` (graded or lower-is-better) instead of ``correct``."""
    return evaluation.kind in LOWER_IS_BETTER or evaluation.metrics.get(GRADED, 0.0) == 1.0


def goodness(evaluation: Evaluation) -> float:
    """The evaluation's score on a higher-is-better 0–1 scale, for figures that mix suites (the forgetting matrix,
    a tuning objective): the score itself, or for bits per byte 2^(−bpb), the model's geometric-mean probability
    of each byte (1 for a perfect model, falling as it forgets)."""
    return 2.0 ** -evaluation.score if evaluation.kind in LOWER_IS_BETTER else evaluation.score


def _joined(before: Evaluation, after: Evaluation) -> list[tuple[ExampleResult, ExampleResult]]:
    """Example pairs present in both evaluations, in the order of ``after`` (ids are the join key)."""
    by_id = {e.id: e for e in before.examples}
    return [(by_id[e.id], e) for e in after.examples if e.id in by_id]


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: binomial test of ``b`` vs ``c`` discordant pairs at p = 1/2.

    ``b`` and ``c`` count the pairs that changed in each direction; concordant pairs carry no
    information about a difference, so they do not enter. No discordant pairs → p = 1.
    """
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def negative_flip_rate(before: Evaluation, after: Evaluation) -> float:
    """Share of joined examples that ``before`` got right and ``after`` gets wrong (Yan et al. 2021)."""
    pairs = _joined(before, after)
    return sum(b.correct and not a.correct for b, a in pairs) / len(pairs) if pairs else 0.0


def positive_flip_rate(before: Evaluation, after: Evaluation) -> float:
    """Share of joined examples that ``before`` got wrong and ``after`` gets right (mirror of the NFR)."""
    pairs = _joined(before, after)
    return sum(a.correct and not b.correct for b, a in pairs) / len(pairs) if pairs else 0.0


class PairedComparison(BaseModel):
    """Two versions on one suite, example by example: delta = after − before (positive is better; before − after for
    a lower-is-better kind). ``test`` names the paired test behind ``mcnemar_p``: McNemar on correct/incorrect
    outcomes, or the sign test on the per-example score differences of a graded suite."""

    n: int
    before_score: float
    after_score: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    mcnemar_p: float
    negative_flips: int
    positive_flips: int
    negative_flip_rate: float
    positive_flip_rate: float
    negative_flip_ids: list[str] = []
    positive_flip_ids: list[str] = []
    test: str = "mcnemar"


def paired_comparison(before: Evaluation, after: Evaluation, confidence: float = 0.95, n_resamples: int = 2000,
                      seed: int = 0) -> PairedComparison:
    """Paired difference of per-example correctness, with a paired-bootstrap CI and an exact McNemar p.

    Resampling whole pairs keeps the correlation between the two versions, which makes the interval
    much tighter than two independent intervals would be. With no joined example the interval is the
    uninformative (−1, 1) and p = 1.
    """
    pairs = _joined(before, after)
    n = len(pairs)
    graded = compares_scores(before) or compares_scores(after)
    b = np.array([p[0].score if graded else p[0].correct for p in pairs], dtype=np.float64)
    a = np.array([p[1].score if graded else p[1].correct for p in pairs], dtype=np.float64)
    better = (b - a) if after.kind in LOWER_IS_BETTER else (a - b)  # each example's change, positive is better
    neg_ids = [x.id for x, y in pairs if x.correct and not y.correct]
    pos_ids = [x.id for x, y in pairs if y.correct and not x.correct]
    if n == 0:
        return PairedComparison(n=0, before_score=0.0, after_score=0.0, delta=0.0, ci_low=-1.0, ci_high=1.0,
                                confidence=confidence, mcnemar_p=1.0, negative_flips=0, positive_flips=0,
                                negative_flip_rate=0.0, positive_flip_rate=0.0)
    ci_low, ci_high = bootstrap_ci(better, confidence, n_resamples, seed)
    # McNemar's exact test is the sign test on 0/1 outcomes; on graded scores the sign test counts the examples
    # that got worse against those that got better (ties carry no information, as concordant pairs do not)
    worse, improved = ((int((better < 0).sum()), int((better > 0).sum())) if graded
                       else (len(neg_ids), len(pos_ids)))
    return PairedComparison(
        n=n,
        before_score=float(b.mean()),
        after_score=float(a.mean()),
        delta=float(better.mean()),
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=confidence,
        mcnemar_p=mcnemar_exact(worse, improved),
        negative_flips=len(neg_ids),
        positive_flips=len(pos_ids),
        negative_flip_rate=len(neg_ids) / n,
        positive_flip_rate=len(pos_ids) / n,
        negative_flip_ids=neg_ids,
        positive_flip_ids=pos_ids,
        test="sign" if graded else "mcnemar",
    )


# --------------------------------------------------------------------------- safety


def is_refusal(example: ExampleResult) -> bool:
    """Whether the output was a refusal; for an expected refusal, ``correct`` says the same when unset."""
    if example.refused is not None:
        return example.refused
    return example.correct if example.expect == "refuse" else not example.correct


class SafetyFlip(BaseModel):
    """An expected refusal that the baseline refused and the candidate no longer refuses."""

    id: str
    prompt: str | None = None
    category: str | None = None
    before_output: str | None = None
    after_output: str | None = None


def safety_flips(before: Evaluation, after: Evaluation) -> list[SafetyFlip]:
    """Flips in the unsafe direction: expect == "refuse", refused before, complied now.

    Over-refusals (an expected compliance that is now refused) are not safety flips; they show up as
    ordinary negative flips.
    """
    return [
        SafetyFlip(id=a.id, prompt=a.prompt or b.prompt, category=a.category or b.category,
                   before_output=b.output, after_output=a.output)
        for b, a in _joined(before, after)
        if (a.expect or b.expect) == "refuse" and is_refusal(b) and not is_refusal(a)
    ]


def safe_flips(before: Evaluation, after: Evaluation) -> int:
    """Count of the mirror flips (expected refusal: complied before, refused now); McNemar's other cell."""
    return sum((a.expect or b.expect) == "refuse" and not is_refusal(b) and is_refusal(a)
               for b, a in _joined(before, after))


def refusal_rate(evaluation: Evaluation) -> float | None:
    """Share of expected refusals that were refused; falls back to ``metrics['refusal_rate']``; None if unknown."""
    expected = [e for e in evaluation.examples if e.expect == "refuse"]
    if expected:
        return sum(is_refusal(e) for e in expected) / len(expected)
    return evaluation.metrics.get("refusal_rate")


def safety_flip_rate(before: Evaluation, after: Evaluation) -> float:
    """Unsafe flips / joined examples whose expected behaviour is a refusal (0 when there are none)."""
    n = sum((a.expect or b.expect) == "refuse" for b, a in _joined(before, after))
    return len(safety_flips(before, after)) / n if n else 0.0


# --------------------------------------------------------------------------- accuracy matrix


def accuracy_matrix(evaluations: Iterable[Evaluation], versions: Sequence[str], suites: Sequence[str]) -> np.ndarray:
    """R[i][j] = score of ``versions[i]`` (oldest first) on ``suites[j]`` (as :func:`goodness`, so a perplexity
    suite reads higher-is-better like the rest); NaN where not evaluated.

    When a (version, suite) pair has several evaluations (e.g. suite versions), the latest one wins.
    """
    vi = {v: i for i, v in enumerate(versions)}
    sj = {s: j for j, s in enumerate(suites)}
    r = np.full((len(versions), len(suites)), np.nan)
    for ev in sorted(evaluations, key=lambda e: e.created_at):
        if ev.version in vi and ev.suite in sj:
            r[vi[ev.version], sj[ev.suite]] = goodness(ev)
    return r


def _learned_at(r: np.ndarray, learned_at: Sequence[int] | None) -> list[int]:
    if learned_at is None:
        if r.shape[1] > r.shape[0]:
            raise ValueError("more suites than versions: pass learned_at (the row at which each suite was learned)")
        return list(range(r.shape[1]))
    if len(learned_at) != r.shape[1]:
        raise ValueError(f"learned_at has {len(learned_at)} entries for {r.shape[1]} suites")
    return list(learned_at)


def forgetting(r: np.ndarray) -> np.ndarray:
    """Per suite j: max over earlier versions of R[·][j] − R[now][j] (now = last row); NaN if no earlier score.

    Positive means the latest version lost ground it once held; negative means it is the best so far.
    """
    r = np.asarray(r, dtype=np.float64)
    out = np.full(r.shape[1], np.nan)
    if r.shape[0] < 2:
        return out
    for j in range(r.shape[1]):
        earlier = r[:-1, j][~np.isnan(r[:-1, j])]
        if earlier.size and not np.isnan(r[-1, j]):
            out[j] = earlier.max() - r[-1, j]
    return out


def backward_transfer(r: np.ndarray, learned_at: Sequence[int] | None = None) -> float:
    """BWT = mean over old suites j of R[T][j] − R[t_j][j] (Lopez-Paz & Ranzato 2017).

    ``t_j = learned_at[j]`` is the row of the version that learned suite j; by default the classic square
    case t_j = j. Old suites are those learned before the last row T. NaN when there is none.
    """
    r = np.asarray(r, dtype=np.float64)
    last = r.shape[0] - 1
    diffs = [r[last, j] - r[t, j] for j, t in enumerate(_learned_at(r, learned_at))
             if t < last and not np.isnan(r[last, j]) and not np.isnan(r[t, j])]
    return float(np.mean(diffs)) if diffs else math.nan


def forward_transfer(r: np.ndarray, baseline: Sequence[float], learned_at: Sequence[int] | None = None) -> float:
    """FWT = mean over suites j learned after the first row of R[t_j − 1][j] − baseline[j].

    How much earlier versions already did on a suite before learning it, relative to a reference row
    (e.g. the foundation's scores; GEM uses a random initialisation). NaN when there is no such suite.
    """
    r = np.asarray(r, dtype=np.float64)
    if len(baseline) != r.shape[1]:
        raise ValueError(f"baseline has {len(baseline)} entries for {r.shape[1]} suites")
    diffs = [r[t - 1, j] - baseline[j] for j, t in enumerate(_learned_at(r, learned_at))
             if t >= 1 and not np.isnan(r[t - 1, j]) and not math.isnan(baseline[j])]
    return float(np.mean(diffs)) if diffs else math.nan


# --------------------------------------------------------------------------- plasticity


def plasticity_headroom(profile: dict[str, float], reference_profile: dict[str, float]) -> float:
    """probe_improvement(model) / probe_improvement(reference); NaN when the reference did not improve.

    Both profiles come from ``loopgate.evaluate.plasticity.plasticity_profile`` with the same probe
    steps and seed; the reference is the line's foundation ancestor. Defined here (pure arithmetic) so
    that the gates can use it without importing torch.
    """
    ref = reference_profile["probe_improvement"]
    if not ref > 0:
        return math.nan
    return profile["probe_improvement"] / ref


# --------------------------------------------------------------------------- cost

COST_KINDS = ("generation", "safety")


def cost_per_1k_requests(mean_latency_s: float, price_per_hour: float) -> float:
    """Money for 1,000 requests served one after another: 1000 × seconds per request × price per second."""
    return 1000.0 * mean_latency_s * price_per_hour / 3600.0


def cost_summary(evaluations: Iterable[Evaluation], params: int | float | None = None,
                 price_per_hour: float | None = None) -> dict[str, float]:
    """One cost profile of a version from the engine figures of its generation and safety evaluations.

    - latencies: percentiles of the pooled per-example latencies when examples carry them (exact),
      otherwise the request-weighted mean of the per-suite percentiles (an approximation);
    - tokens/s, mean output tokens, items/s: request-weighted means; wall_s: sum; peak memory: max;
    - seconds per request = total wall time / requests (what a batched server really pays per request),
      else the mean per-example latency; money per 1,000 requests follows from ``price_per_hour``.
    Figures no evaluation provides are left out rather than guessed.
    """
    evs = [e for e in evaluations if e.kind in COST_KINDS]
    out: dict[str, float] = {}
    if params is not None:
        out["params"] = float(params)
    if price_per_hour is not None:
        out["price_per_hour"] = float(price_per_hour)
    if not evs:
        return out
    n_total = sum(e.n for e in evs)
    out["n_requests"] = float(n_total)

    def weighted(key: str) -> float | None:
        have = [(e.metrics[key], e.n) for e in evs if key in e.metrics and e.n > 0]
        weight = sum(w for _, w in have)
        return sum(v * w for v, w in have) / weight if weight else None

    latencies = [x.latency_ms for e in evs for x in e.examples if x.latency_ms is not None]
    # like the engine: an empty output still cost its request, counted as one token
    per_token = [x.latency_ms / max(x.output_tokens or 0, 1) for e in evs for x in e.examples
                 if x.latency_ms is not None]
    for key, pooled, q in (("latency_p50_ms", latencies, 50), ("latency_p95_ms", latencies, 95),
                           ("latency_per_token_p50_ms", per_token, 50), ("latency_per_token_p95_ms", per_token, 95)):
        value = float(np.percentile(pooled, q)) if pooled else weighted(key)
        if value is not None:
            out[key] = value
    for key in ("tokens_per_s", "mean_output_tokens", "items_per_s"):
        value = weighted(key)
        if value is not None:
            out[key] = value
    peaks = [e.metrics["peak_memory_mb"] for e in evs if "peak_memory_mb" in e.metrics]
    if peaks:
        out["peak_memory_mb"] = max(peaks)
    walls = [e for e in evs if "wall_s" in e.metrics]
    if walls:
        out["wall_s"] = sum(e.metrics["wall_s"] for e in walls)
    seconds: float | None = None
    if walls and sum(e.n for e in walls) > 0:
        seconds = out["wall_s"] / sum(e.n for e in walls)
    elif latencies:
        seconds = float(np.mean(latencies)) / 1000.0
    if seconds is not None:
        out["seconds_per_request"] = seconds
        if price_per_hour is not None:
            out["cost_per_1k_requests"] = cost_per_1k_requests(seconds, price_per_hour)
    return out
