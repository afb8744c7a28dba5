"""Typed records that cross layers: evaluations, gate results, decisions, ledger entries.

They serialise the same way to the registry, the JSON output of the CLI and the report
(inspect_ai-style: one canonical shape per record).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

M = TypeVar("M", bound=BaseModel)


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
    # Stored as the dict the gate's evidence model dumps to (gates/evidence.py), not as a typed union: decisions
    # written before the models existed, and evidence of a gate with no model yet, must load and verify unchanged,
    # and a union with no stored discriminator could read one gate's evidence as another's. Readers ask for the
    # typed record with :meth:`evidence_as`.
    evidence: dict[str, Any] = {}
    overridden_by: list[str] = []

    def evidence_as(self, model: type[M]) -> M:
        """This gate's evidence as its typed record, e.g. ``result.evidence_as(RegressionEvidence)``."""
        return model.model_validate(self.evidence)


class Baselines(BaseModel):
    """The versions a candidate is judged against, by role; ``None`` where the line has none.

    A decision stores them as the plain ``{role: version}`` dict :meth:`as_dict` gives (that is what its ledger
    entry hashes), so a decision written before this record existed reads back the same."""

    model_config = ConfigDict(extra="allow")

    production: str | None = None  # the line's production version: what the release would replace
    previous: str | None = None  # the line's version the candidate was built from
    parent: str | None = None  # the parent line's production version: what the candidate must keep up with

    @classmethod
    def of(cls, roles: dict[str, str | None]) -> Baselines:
        return cls.model_validate(roles)

    def replaced(self) -> tuple[str, str] | None:
        """(role, version) a same-line comparison is made against: production, else previous, else None."""
        if self.production:
            return "production", self.production
        if self.previous:
            return "previous", self.previous
        return None

    def as_dict(self) -> dict[str, str | None]:
        return self.model_dump(exclude_unset=True)


class TransferredFrom(BaseModel):
    """Where a re-derived child came from: the child version it re-derived and its old and new parent."""

    model_config = ConfigDict(extra="allow")

    old_child: str | None = None
    old_parent: str | None = None
    new_parent: str | None = None


class Provenance(BaseModel):
    """What a version records about how it was built, read as fields (``Provenance.of(version.provenance)``).

    Versions keep it as a JSON dict in the registry, written by the update run, propagation or ``register`` and
    never rewritten (versions are immutable), so this is a reading of it: every field is optional and any other
    key — from an older Loopgate, a foreign tool or a newer run — is kept as an extra."""

    model_config = ConfigDict(extra="allow")

    # how it was trained (train/update.py)
    method: str | None = None
    built_from: str | None = None  # the version the update started from (the ``previous`` baseline)
    run_key: str | None = None  # what makes a resumed run find the version it already made
    recipe: dict[str, Any] | None = None
    data_sha256: list[str] = []
    replay_sha256: list[str] = []
    retention_sha256: list[str] = []
    parent_weights_sha256: str | None = None
    metrics: dict[str, float] = {}
    final_loss: float | None = None
    tokens_seen: int | None = None
    tokens_per_s: float | None = None
    train_flops: float | None = None
    wall_s: float | None = None
    train_s: float | None = None
    code_version: str | None = None
    params: int | None = None
    seed: int | None = None
    # where it trained (train/precision.py's placement)
    device: str | None = None
    dtype: str | None = None
    # capability transfer (loop/propagation.py)
    strategy: str | None = None
    transferred_from: TransferredFrom | None = None
    attempts: list[dict[str, Any]] = []
    note: str | None = None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Provenance:
        """The typed reading of a stored provenance. A key whose value does not have the type this record expects
        (written by a foreign tool or an older Loopgate) is read as absent rather than failing a report or a
        baseline lookup — the stored provenance itself is never changed."""
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            bad = {err["loc"][0] for err in e.errors() if err["loc"]}
            return cls.model_validate({k: v for k, v in raw.items() if k not in bad})

    @property
    def old_child(self) -> str | None:
        """The version a propagated child was re-derived from: ``built_from``, else the transfer's old child."""
        return self.built_from or (self.transferred_from.old_child if self.transferred_from else None)


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
