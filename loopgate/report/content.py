"""What a report says, gathered from the registry into typed records (no rendering here).

Every figure comes from a stored evaluation (version + suite hash) or a stored decision, so a reader can
trace it back; nothing is recomputed from model weights.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from loopgate.evaluate.metrics import (
    PairedComparison,
    cost_summary,
    paired_comparison,
    refusal_rate,
    safety_flips,
)
from loopgate.loop.workspace import Workspace
from loopgate.records import Decision, Evaluation, ExampleResult
from loopgate.report.marks import RollbackMark, TransferMark, rollback_marks, transfer_mark
from loopgate.store import Approval, VersionInfo

# cost figures shown in the release notes and plotted across versions, in display order
COST_METRICS = ("latency_p50_ms", "latency_p95_ms", "latency_per_token_p95_ms", "tokens_per_s",
                "mean_output_tokens", "peak_memory_mb", "seconds_per_request", "cost_per_1k_requests")
FLIP_EXAMPLES = 3
# prompts and outputs longer than this are clipped in the flip examples
OUTPUT_CHARS = 600

Role = Literal["owned", "inherited", "other"]


class SuiteRow(BaseModel):
    """One suite's score for the version and, where the baseline was evaluated too, the paired comparison."""

    suite: str
    role: Role
    kind: str
    n: int
    score: float
    ci_low: float | None = None
    ci_high: float | None = None
    suite_sha256: str
    refusal_rate: float | None = None
    baseline_score: float | None = None
    comparison: PairedComparison | None = None
    # the baseline was scored on a different revision of the suite (compared on the shared example ids)
    suite_changed: bool = False

    @property
    def delta(self) -> float | None:
        """Paired delta when both have per-example outcomes, else the plain score difference (no CI)."""
        if self.comparison is not None:
            return self.comparison.delta
        return None if self.baseline_score is None else self.score - self.baseline_score


class FlipExample(BaseModel):
    """One example that changed outcome between the baseline and the version."""

    id: str
    prompt: str | None = None
    before_output: str | None = None
    after_output: str | None = None
    category: str | None = None
    unsafe: bool = False


class FlipGroup(BaseModel):
    """The flips of one suite in one direction, with a few examples."""

    suite: str
    direction: Literal["negative", "positive"]
    count: int
    rate: float
    unsafe: int = 0
    examples: list[FlipExample] = []

    @property
    def more(self) -> int:
        return self.count - len(self.examples)


class Change(BaseModel):
    """One setting that differs between the baseline and the version."""

    key: str
    before: Any = None
    after: Any = None
    change: Literal["added", "removed", "changed"]


class DataDiff(BaseModel):
    """Training-data hashes of the version against the baseline's."""

    added: list[str] = []
    removed: list[str] = []
    kept: list[str] = []


class CostRow(BaseModel):
    metric: str
    before: float | None = None
    after: float | None = None

    @property
    def delta(self) -> float | None:
        return None if self.before is None or self.after is None else self.after - self.before

    @property
    def ratio(self) -> float | None:
        return None if self.before in (None, 0) or self.after is None else self.after / self.before  # type: ignore[operator]


class ReleaseNotes(BaseModel):
    """The version against the one it replaces."""

    version: VersionInfo
    tier: str
    baseline: VersionInfo | None = None
    baseline_reason: str = ""
    confidence: float = 0.95
    suites: list[SuiteRow] = []
    flips: list[FlipGroup] = []
    decision: Decision | None = None
    approvals: list[Approval] = []
    data: DataDiff = DataDiff()
    recipe_changes: list[Change] = []
    version_changes: list[Change] = []
    cost: list[CostRow] = []
    price_per_hour: float | None = None
    rollbacks: list[RollbackMark] = []
    transfer: TransferMark | None = None


# --------------------------------------------------------------------------- baselines and evaluations


def replaced_version(ws: Workspace, version: VersionInfo) -> tuple[VersionInfo | None, str]:
    """The version this one is compared with, and why that one.

    A decided version: the baseline its (latest) release decision compared it with — production, else previous,
    as the gates chose it (:func:`loopgate.loop.gating.baselines_for`) — so the notes never compare against
    another version than the gates did. A version never decided (registered, released before decisions were
    recorded): the production version it displaced, else the line's previous version.
    """
    history = ws.store.channel_history(version.line, "production")
    released = any(m.to_version == version.id for m in history)
    decisions = ws.store.decisions(version.id)
    if decisions:
        baselines = decisions[-1].baselines
        if baselines.get("production"):
            why = (f"production before {version.id} was released" if released
                   else "current production version, which releasing it would replace")
            return ws.store.version(str(baselines["production"])), why
        if baselines.get("previous"):
            return ws.store.version(str(baselines["previous"])), "previous version of the line"
        return None, "first version of the line"
    for move in reversed(history):
        if move.to_version == version.id and move.from_version and move.from_version != version.id:
            return ws.store.version(move.from_version), f"production before {version.id} was released"
    prod = ws.store.channel(version.line, "production")
    if not released and prod is not None and prod != version.id and ws.store.version(prod).number < version.number:
        return ws.store.version(prod), "current production version, which releasing it would replace"
    earlier = [v for v in ws.store.versions(version.line) if v.number < version.number]
    if earlier:
        return earlier[-1], "previous version of the line"
    return None, "first version of the line"


def latest_by_suite(evaluations: list[Evaluation]) -> dict[str, Evaluation]:
    """The newest evaluation per suite name (a suite edited later has a new hash and a newer record)."""
    out: dict[str, Evaluation] = {}
    for ev in sorted(evaluations, key=lambda e: e.created_at):
        out[ev.suite] = ev
    return out


def suite_order(ws: Workspace, line: str, evaluated: list[str]) -> list[tuple[str, Role]]:
    """Owned suites, then inherited ones, then anything else the line's versions were evaluated on."""
    owned = ws.eco.owned_suites(line)
    inherited = ws.eco.inherited_suites(line)
    others = sorted(s for s in set(evaluated) if s not in owned and s not in inherited)
    return ([(s, "owned") for s in owned] + [(s, "inherited") for s in inherited]
            + [(s, "other") for s in others])


def suite_rows(ws: Workspace, version: VersionInfo, baseline: VersionInfo | None,
               confidence: float) -> tuple[list[SuiteRow], dict[str, tuple[Evaluation, Evaluation]]]:
    """Score rows for every suite the version was evaluated on, and the (baseline, version) pairs compared."""
    mine = latest_by_suite(ws.store.evaluations(version.id))
    theirs_all = ws.store.evaluations(baseline.id) if baseline else []
    theirs = latest_by_suite(theirs_all)
    rows: list[SuiteRow] = []
    pairs: dict[str, tuple[Evaluation, Evaluation]] = {}
    for suite, role in suite_order(ws, version.line, list(mine)):
        ev = mine.get(suite)
        if ev is None:
            continue
        same_hash = next((b for b in reversed(theirs_all) if b.suite_sha256 == ev.suite_sha256), None)
        before = same_hash or theirs.get(suite)
        comparison = None
        if before is not None and before.examples and ev.examples:
            comparison = paired_comparison(before, ev, confidence=confidence)
            pairs[suite] = (before, ev)
        rows.append(SuiteRow(
            suite=suite, role=role, kind=ev.kind, n=ev.n, score=ev.score, ci_low=ev.ci_low, ci_high=ev.ci_high,
            suite_sha256=ev.suite_sha256, refusal_rate=refusal_rate(ev) if ev.kind == "safety" else None,
            baseline_score=before.score if before is not None else None, comparison=comparison,
            suite_changed=before is not None and before.suite_sha256 != ev.suite_sha256,
        ))
    return rows, pairs


def flip_groups(pairs: dict[str, tuple[Evaluation, Evaluation]], rows: list[SuiteRow],
                per_group: int = FLIP_EXAMPLES) -> list[FlipGroup]:
    """Negative flips of every suite first (unsafe safety flips leading), then positive flips."""
    groups: dict[str, list[FlipGroup]] = {"negative": [], "positive": []}
    for row in rows:
        if row.comparison is None or row.suite not in pairs:
            continue
        before, after = pairs[row.suite]
        b_by_id = {e.id: e for e in before.examples}
        a_by_id = {e.id: e for e in after.examples}
        unsafe_ids = {f.id for f in safety_flips(before, after)} if after.kind == "safety" else set()
        for direction, ids, rate in (("negative", row.comparison.negative_flip_ids,
                                      row.comparison.negative_flip_rate),
                                     ("positive", row.comparison.positive_flip_ids,
                                      row.comparison.positive_flip_rate)):
            if not ids:
                continue
            ordered = sorted(ids, key=lambda i: (i not in unsafe_ids, ids.index(i)))
            groups[direction].append(FlipGroup(
                suite=row.suite, direction=direction, count=len(ids), rate=rate,  # type: ignore[arg-type]
                unsafe=len(unsafe_ids & set(ids)),
                examples=[_flip_example(b_by_id[i], a_by_id[i], i in unsafe_ids) for i in ordered[:per_group]],
            ))
    for direction in groups:
        groups[direction].sort(key=lambda g: (-g.unsafe, -g.count, g.suite))
    return groups["negative"] + groups["positive"]


def _clip(text: str | None, limit: int = OUTPUT_CHARS) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def _flip_example(before: ExampleResult, after: ExampleResult, unsafe: bool) -> FlipExample:
    return FlipExample(id=after.id, prompt=_clip(after.prompt or before.prompt), before_output=_clip(before.output),
                       after_output=_clip(after.output), category=after.category or before.category, unsafe=unsafe)


# --------------------------------------------------------------------------- diffs


def flatten(d: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested dict → {"a.b": value}; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def dict_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    """Settings added, removed or changed, by dotted key."""
    b, a = flatten(before), flatten(after)
    out: list[Change] = []
    for key in sorted(set(b) | set(a)):
        if key not in b:
            out.append(Change(key=key, after=a[key], change="added"))
        elif key not in a:
            out.append(Change(key=key, before=b[key], change="removed"))
        elif a[key] != b[key]:
            out.append(Change(key=key, before=b[key], after=a[key], change="changed"))
    return out


def data_diff(before: list[str], after: list[str]) -> DataDiff:
    return DataDiff(added=[h for h in after if h not in before], removed=[h for h in before if h not in after],
                    kept=[h for h in after if h in before])


def version_changes(before: VersionInfo, after: VersionInfo) -> list[Change]:
    """Provenance fields that differ: method kind, parent and base versions, seed, source."""
    fields = ("kind", "source", "parent_version", "base_version", "seed")
    return dict_changes({f: getattr(before, f) for f in fields}, {f: getattr(after, f) for f in fields})


def cost_rows(before: dict[str, float], after: dict[str, float]) -> list[CostRow]:
    keys = [k for k in COST_METRICS if k in before or k in after]
    return [CostRow(metric=k, before=before.get(k), after=after.get(k)) for k in keys]


def version_cost(ws: Workspace, version_id: str, price_per_hour: float | None) -> dict[str, float]:
    """The version's cost profile from its stored generation and safety evaluations."""
    return cost_summary(ws.store.evaluations(version_id), price_per_hour=price_per_hour)


# --------------------------------------------------------------------------- assembly


def release_notes(ws: Workspace, version_id: str) -> ReleaseNotes:
    """Everything the release notes say about ``version_id``, from the registry."""
    version = ws.store.version(version_id)
    spec = ws.eco.line(version.line)
    policy = ws.eco.policy_for(version.line)
    confidence = policy.regression.confidence
    baseline, reason = replaced_version(ws, version)
    rows, pairs = suite_rows(ws, version, baseline, confidence)
    decisions = ws.store.decisions(version_id)
    price = policy.release.price_per_hour
    notes = ReleaseNotes(
        version=version, tier=spec.tier.value, baseline=baseline, baseline_reason=reason, confidence=confidence,
        suites=rows, flips=flip_groups(pairs, rows), decision=decisions[-1] if decisions else None,
        approvals=ws.store.approvals(version_id), price_per_hour=price,
        rollbacks=rollback_marks(ws.store.channel_history(version.line), version_id), transfer=transfer_mark(version),
    )
    after_cost = version_cost(ws, version_id, price)
    if baseline is not None:
        notes.data = data_diff(baseline.data_sha256, version.data_sha256)
        notes.recipe_changes = dict_changes(baseline.recipe, version.recipe)
        notes.version_changes = version_changes(baseline, version)
        notes.cost = cost_rows(version_cost(ws, baseline.id, price), after_cost)
    else:
        notes.data = data_diff([], version.data_sha256)
        notes.recipe_changes = dict_changes(None, version.recipe)
        notes.cost = cost_rows({}, after_cost)
    return notes


