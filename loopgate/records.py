"""Typed records that cross layers: evaluations, gate results, decisions, ledger entries.

They serialise the same way to the registry, the JSON output of the CLI and the report
(inspect_ai-style: one canonical shape per record).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Verdict(StrEnum):
    """Argo-style three-valued verdict."""

    passed = "pass"
    failed = "fail"
    inconclusive = "inconclusive"


class ExampleResult(BaseModel):
    """One example's outcome; kept so that flips between two versions can be computed later."""

    id: str
    correct: bool
    score: float = 0.0
    output: str | None = None
    prompt: str | None = None
    # safety suites: expected behaviour, whether the output was a refusal, and the harm category
    expect: str | None = None
    refused: bool | None = None
    category: str | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    # why the scorer gave what it gave when it could not read the output (a judge's answer with no yes/no or number)
    reason: str | None = None


class Evaluation(BaseModel):
    """The scores of one version on one suite, with per-example outcomes."""

    version: str
    suite: str
    suite_sha256: str
    kind: str
    n: int
    score: float
    ci_low: float | None = None
    ci_high: float | None = None
    examples: list[ExampleResult] = []
    # extra figures: refusal_rate, latency_p50_ms, latency_p95_ms, tokens_per_s, mean_output_tokens, ...
    metrics: dict[str, float] = {}
    cache_key: str = ""
    engine_version: str = ""
    source: str = "loopgate"
    created_at: datetime = Field(default_factory=utcnow)
    # where the engine ran it: "cpu" / "cuda" / "mps" and the weights' dtype ("float32", "bfloat16"); empty when
    # recorded by another tool or before Loopgate recorded them
    device: str = ""
    dtype: str = ""
    # "MODEL at BASE_URL" when scored through the line's upstream server (``evaluate --through-upstream``), not
    # by the engine on the weights; empty otherwise
    upstream: str = ""


class ServingCost(BaseModel):
    """Serving speed of a candidate and the version it would replace on one suite's prompts (the line's
    traffic), measured in one process on one thread with identical work, batch by batch back to back, medians —
    never replayed from an evaluation made on another run, machine, batch size or load."""

    suite: str
    rows: int
    rounds: int
    # ms_per_token: wall time per generated token per request
    candidate: dict[str, float]
    baseline: dict[str, float] | None = None


class GateResult(BaseModel):
    """One gate's verdict and the evidence it rests on."""

    name: str
    verdict: Verdict
    blocking: bool = True
    summary: str = ""
    evidence: dict[str, Any] = {}
    overridden_by: list[str] = []


class Decision(BaseModel):
    """All gate verdicts for a candidate; what a release, and an audit, points at."""

    version: str
    verdict: Verdict
    gates: list[GateResult]
    policy_sha256: str
    baselines: dict[str, str | None] = {}
    # role → why that version (or none) is the baseline: baselines are versions production held, never a
    # candidate that was rejected
    baseline_notes: dict[str, str] = {}
    requester: str = "loopgate"
    # hash of what the decision was computed from (baselines, suites, policy, approvals): the same inputs
    # give the same decision, so a resumed run reuses it instead of deciding twice
    inputs_sha256: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    id: int | None = None

    @property
    def allows_release(self) -> bool:
        return self.verdict is Verdict.passed


class LedgerEntry(BaseModel):
    """One append-only, hash-chained record."""

    seq: int
    ts: str
    actor: str
    kind: str
    subject: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


# Capability transfer's records live here, not in ``train/transfer.py``, so the loop, its outcomes and the CLI
# can name them without importing torch (a ``loopgate status`` must not load a model library).


class TransferCandidate(BaseModel):
    """One re-derived child: ``model_dir`` is always a full model one can evaluate; ``adapter_dir`` (if any)
    attaches to ``base_dir``."""

    strategy: str
    model_dir: Path
    adapter_dir: Path | None = None
    base_dir: Path


class TransferAttempt(BaseModel):
    strategy: str
    accepted: bool
    reason: str
    wall_s: float


class TransferResult(BaseModel):
    """The accepted candidate (``None`` when every strategy was refused or rejected) and every attempt."""

    accepted: TransferCandidate | None
    attempts: list[TransferAttempt]
