"""Gate evidence as a reviewer reads it: figures beside their thresholds, intervals as bars, per-category
refusal tables, flipped prompts with both versions' answers side by side — never a JSON dump.

:func:`gate_view` turns one gate's recorded evidence into a :class:`GateView` (typed pieces, no markup);
the ``evidence.html.j2`` macros draw it for the dashboard and the static reports, and :meth:`GateView.lines`
says it in plain sentences for Markdown. Flip examples come from the stored evaluations through an
:data:`ExampleLookup` the caller passes (see :func:`lookup_from_store`), so this module does no I/O itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from loopgate.gates.evidence import (
    EVIDENCE,
    ApprovalEvidence,
    Comparison,
    CostEvidence,
    InheritanceEvidence,
    PlasticityEvidence,
    RegressionEvidence,
    RollbackEvidence,
    SafetyEvidence,
    SafetySuite,
    UnsafeFlip,
)
from loopgate.records import Evaluation, GateResult

# the evidence keys each gate's view draws; any other key is listed as a fact
DRAWN: dict[str, set[str]] = {
    "regression": {"thresholds", "baseline", "suites"},
    "inheritance": {"thresholds", "baselines", "suites"},
    "safety": {"thresholds", "baseline", "suites", "unsafe_flips", "flipped"},
    "cost": {"thresholds", "suites", "traffic_suites", "baseline_version", "checks"},
    "rollback": {"thresholds", "smoke_drift", "target", "exists", "hashes_ok", "loads", "smoke_suite", "smoke_score",
                 "recorded_smoke_score", "error"},
    "plasticity": {"headroom", "min_headroom", "candidate", "reference"},
    "approval": {"required", "requester", "approvers", "refused_self_approvals", "reasons", "refused_overrides"},
}
# the flipped prompts shown per suite (the counts stay exact)
MAX_FLIPS = 5
TEXT_CHARS = 300


class Figure(BaseModel):
    """One measured figure against its threshold: ``value`` ``op`` ``threshold`` should hold."""

    label: str
    value: bool | int | float | str | None
    threshold: bool | int | float | str | None = None
    op: Literal["≥", "≤", "="] | None = None
    ok: bool | None = None
    note: str = ""


class Interval(BaseModel):
    """An estimate with its confidence interval on a scale, and the line it must stay above."""

    label: str
    estimate: float
    low: float
    high: float
    floor: float | None = None  # e.g. -tolerance for a score delta, the refusal floor for a rate
    lo_scale: float = -1.0
    hi_scale: float = 1.0
    verdict: str = ""
    note: str = ""

    def x(self, value: float, width: float = 260.0) -> float:
        """Where ``value`` falls on a bar ``width`` pixels wide."""
        span = self.hi_scale - self.lo_scale or 1.0
        return round(max(0.0, min(1.0, (value - self.lo_scale) / span)) * width, 1)


class CategoryRow(BaseModel):
    category: str
    n: int
    refused: int
    refusal_rate: float
    unsafe_flips: int = 0


class CategoryTable(BaseModel):
    suite: str
    floor: float | None = None
    rows: list[CategoryRow]


class Flip(BaseModel):
    """One prompt whose outcome flipped, with both versions' answers."""

    suite: str
    id: str
    prompt: str | None = None
    before: str | None = None
    after: str | None = None
    category: str | None = None
    unsafe: bool = False


class FlipSet(BaseModel):
    suite: str
    direction: Literal["negative", "positive", "unsafe"]
    count: int
    before_version: str | None = None
    after_version: str | None = None
    flips: list[Flip] = []


class GateView(BaseModel):
    """What one gate found, in pieces a page can draw."""

    name: str
    verdict: str
    blocking: bool
    summary: str
    overridden_by: list[str] = []
    figures: list[Figure] = []
    intervals: list[Interval] = []
    categories: list[CategoryTable] = []
    flips: list[FlipSet] = []
    facts: list[tuple[str, str]] = []  # anything else, one labelled line each

    def lines(self) -> list[str]:
        """The evidence as plain sentences (for Markdown and terminals)."""
        out = [f"{f.label}: {fmt(f.value)}" + (f" (must be {f.op} {fmt(f.threshold)})" if f.op else "")
               + (f" — {'holds' if f.ok else 'does not hold'}" if f.ok is not None else "") for f in self.figures]
        out += [f"{i.label}: {fmt(i.estimate, sign=i.lo_scale < 0)} [{fmt(i.low, sign=i.lo_scale < 0)}, "
                f"{fmt(i.high, sign=i.lo_scale < 0)}]" + (f", floor {fmt(i.floor, sign=i.lo_scale < 0)}"
                                                          if i.floor is not None else "") for i in self.intervals]
        for t in self.categories:
            out += [f"{t.suite} / {r.category}: refused {r.refused}/{r.n} ({fmt(r.refusal_rate)}), "
                    f"{r.unsafe_flips} unsafe flips" for r in t.rows]
        for s in self.flips:
            out.append(f"{s.count} {s.direction} flip(s) on {s.suite}: " + ", ".join(f.id for f in s.flips)
                       + (" …" if s.count > len(s.flips) else ""))
        out += [f"{k}: {v}" for k, v in self.facts]
        return out


def fmt(value: Any, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return str(value)


# (suite, example id, version) → (prompt, output, category) or None
ExampleLookup = Callable[[str, str, str], tuple[str | None, str | None, str | None] | None]


def lookup_from_store(evaluations_of: Callable[[str], list[Evaluation]]) -> ExampleLookup:
    """An :data:`ExampleLookup` reading each version's stored evaluations once (the latest per suite wins)."""
    index: dict[str, dict[tuple[str, str], tuple[str | None, str | None, str | None]]] = {}

    def lookup(suite: str, ex_id: str, version: str) -> tuple[str | None, str | None, str | None] | None:
        if version not in index:
            index[version] = {(ev.suite, ex.id): (ex.prompt, ex.output, ex.category)
                              for ev in evaluations_of(version) for ex in ev.examples}
        return index[version].get((suite, ex_id))

    return lookup


def _clip(text: str | None) -> str | None:
    return text if text is None or len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _flips(suite: str, ids: list[str], count: int, direction: Literal["negative", "positive"],
           lookup: ExampleLookup | None, before_version: str | None, after_version: str | None) -> FlipSet:
    flips = []
    for ex_id in ids[:MAX_FLIPS]:
        b = lookup(suite, ex_id, before_version) if lookup and before_version else None
        a = lookup(suite, ex_id, after_version) if lookup and after_version else None
        flips.append(Flip(suite=suite, id=ex_id, prompt=_clip((a or b or (None, None, None))[0]),
                          before=_clip(b[1]) if b else None, after=_clip(a[1]) if a else None,
                          category=(a or b or (None, None, None))[2]))
    return FlipSet(suite=suite, direction=direction, count=count, before_version=before_version,
                   after_version=after_version, flips=flips)


def _comparison(view: GateView, suite: str, label: str, c: Comparison, tolerance: float | None,
                lookup: ExampleLookup | None, before_version: str | None, after_version: str | None) -> None:
    """A paired comparison (score delta with its interval, flips) from regression or inheritance evidence."""
    if c.delta is None or c.ci_low is None or c.ci_high is None:
        if c.reason:
            view.facts.append((f"{suite} ({label})", str(c.reason)))
        return
    view.intervals.append(Interval(
        label=f"{suite}: score change vs {label}", estimate=float(c.delta), low=float(c.ci_low),
        high=float(c.ci_high), floor=-tolerance if tolerance is not None else None, verdict=str(c.verdict),
        note=f"{fmt(c.before_score)} → {fmt(c.after_score)} on {c.n} paired examples"
             + (f", McNemar p={c.mcnemar_p:.3g}" if c.mcnemar_p is not None else "")))
    if c.negative_flips:
        view.flips.append(_flips(suite, list(c.negative_flip_ids), int(c.negative_flips), "negative",
                                 lookup, c.version or before_version, after_version))


# what each gate's view draws from its typed evidence: (view, evidence, lookup, candidate) → None
Drawer = Callable[[GateView, Any, ExampleLookup | None, str | None], None]


def _regression(view: GateView, ev: RegressionEvidence, lookup: ExampleLookup | None, candidate: str | None) -> None:
    th = ev.thresholds
    role = ev.baseline.role if ev.baseline else "baseline"
    version = ev.baseline.version if ev.baseline else None
    for suite, s in ev.suites.items():
        _comparison(view, suite, f"{role} {version or ''}".strip(), s, th.get("tolerance"), lookup, version,
                    candidate)
        if s.negative_flip_rate is not None:
            view.figures.append(Figure(label=f"{suite}: negative flip rate", value=s.negative_flip_rate,
                                       threshold=th.get("max_negative_flip_rate"), op="≤",
                                       ok=s.negative_flip_rate <= th.get("max_negative_flip_rate", 1.0)))
    if version:
        view.facts.append(("compared with", f"{role} {version}"))


def _inheritance(view: GateView, ev: InheritanceEvidence, lookup: ExampleLookup | None,
                 candidate: str | None) -> None:
    for suite, s in ev.suites.items():
        for role, c in s.checks.items():
            _comparison(view, suite, f"{role} {c.version or ''}".strip(), c, ev.thresholds.get("tolerance"), lookup,
                        c.version, candidate)


def _safety_suite(view: GateView, suite: str, s: SafetySuite, th: dict[str, Any]) -> None:
    floor, rate, ci = th.get("min_refusal_rate"), s.refusal_rate, s.refusal_rate_ci
    if rate is not None and ci:
        view.intervals.append(Interval(label=f"{suite}: refusal rate", estimate=rate, low=ci[0], high=ci[1],
                                       floor=floor, lo_scale=0.0, hi_scale=1.0, verdict=str(s.verdict),
                                       note=f"{s.n_expected_refusals} prompts that must be refused"))
    if rate is not None:
        view.figures.append(Figure(label=f"{suite}: refusal rate", value=rate, threshold=floor, op="≥",
                                   ok=floor is None or rate >= floor))
    if s.unsafe_flips is not None:
        view.figures.append(_unsafe_flips(suite, s, th))
    if s.categories:
        view.categories.append(CategoryTable(suite=suite, floor=floor, rows=[
            CategoryRow(category=c, n=r.n, refused=r.refused, refusal_rate=r.refusal_rate,
                        unsafe_flips=r.unsafe_flips) for c, r in sorted(s.categories.items())]))


def _safety(view: GateView, ev: SafetyEvidence, lookup: ExampleLookup | None, candidate: str | None) -> None:
    for suite, s in ev.suites.items():
        _safety_suite(view, suite, s, ev.thresholds)
    by_suite: dict[str, list[UnsafeFlip]] = {}
    for f in ev.flipped:
        by_suite.setdefault(f.suite, []).append(f)
    for suite, fs in by_suite.items():
        shown = [Flip(suite=suite, id=f.id, prompt=_clip(f.prompt), before=_clip(f.before_output),
                      after=_clip(f.after_output), category=f.category, unsafe=True) for f in fs[:MAX_FLIPS]]
        view.flips.append(FlipSet(suite=suite, direction="unsafe", count=len(fs),
                                  before_version=ev.baseline.version if ev.baseline else None,
                                  after_version=candidate, flips=shown))


def _cost(view: GateView, ev: CostEvidence, lookup: ExampleLookup | None, candidate: str | None) -> None:
    for c in ev.checks:
        view.figures.append(Figure(
            label=f"{c.figure} ({c.kind}" + (f", {c.suite}" if c.suite else "") + ")",
            value=c.value, threshold=c.limit, op="≤", ok=None if c.skipped else c.verdict == "pass", note=c.note))
    if ev.baseline_version:
        view.facts.append(("measured against", ev.baseline_version))


def _rollback(view: GateView, ev: RollbackEvidence, lookup: ExampleLookup | None, candidate: str | None) -> None:
    if ev.target:
        view.facts.append(("rollback target", ev.target))
        view.figures += [Figure(label="stored files verify", value=ev.hashes_ok, threshold=True, op="=",
                                ok=bool(ev.hashes_ok)),
                         Figure(label="weights load", value=ev.loads, threshold=True, op="=", ok=bool(ev.loads))]
        if ev.smoke_score is not None:
            drift, tol = ev.smoke_drift, ev.thresholds.get("smoke_tolerance")
            view.figures.append(Figure(
                label=f"re-scored on {ev.smoke_suite} (shipped at {fmt(ev.recorded_smoke_score)})",
                value=ev.smoke_score, note=f"drift {fmt(drift)} (tolerance {fmt(tol)})",
                ok=None if drift is None or tol is None else abs(drift) <= tol))
    if ev.error:
        view.facts.append(("error", ev.error))


def _plasticity(view: GateView, ev: PlasticityEvidence, lookup: ExampleLookup | None,
                candidate: str | None) -> None:
    if ev.headroom is not None:
        view.figures.append(Figure(label="plasticity headroom (probe improvement vs the foundation's)",
                                   value=ev.headroom, threshold=ev.min_headroom, op="≥",
                                   ok=ev.min_headroom is None or ev.headroom >= ev.min_headroom))


def _approval(view: GateView, ev: ApprovalEvidence, lookup: ExampleLookup | None, candidate: str | None) -> None:
    view.figures.append(Figure(label="approvers (never the requester)", value=len(ev.approvers),
                               threshold=ev.required, op="≥", ok=len(ev.approvers) >= ev.required))
    view.facts.append(("requested by", ev.requester))
    view.facts += [(f"approved by {who}", why) for who, why in ev.reasons.items()]
    view.facts += [("refused self-approval", who) for who in ev.refused_self_approvals]
    view.facts += [(f"refused override of {r.gate} by {r.approver}", r.why) for r in ev.refused_overrides]


DRAWERS: dict[str, Drawer] = {"regression": _regression, "inheritance": _inheritance, "safety": _safety,
                              "cost": _cost, "rollback": _rollback, "plasticity": _plasticity,
                              "approval": _approval}


def gate_view(gate: GateResult, lookup: ExampleLookup | None = None, candidate: str | None = None) -> GateView:
    """One gate's evidence in the pieces a reviewer reads (see the module docstring)."""
    view = GateView(name=gate.name, verdict=gate.verdict.value, blocking=gate.blocking, summary=gate.summary,
                    overridden_by=list(gate.overridden_by))
    drawn = DRAWN.get(gate.name, {"thresholds"})
    draw = DRAWERS.get(gate.name)
    if draw is not None:
        try:
            typed = gate.evidence_as(EVIDENCE[gate.name])
        except ValidationError:  # evidence no Loopgate wrote in this shape: every key on its own line instead
            drawn = set()
        else:
            draw(view, typed, lookup, candidate)
    # evidence this module does not draw (a new gate, a new key): each piece on its own labelled line
    view.facts += [(k, _short_text(v)) for k, v in gate.evidence.items() if k not in drawn]
    return view


def _unsafe_flips(suite: str, s: SafetySuite, th: dict[str, Any]) -> Figure:
    """The unsafe-flip count against its ceiling, judged by the safety gate's own rule: over the ceiling fails
    only when McNemar is significant at ``alpha`` or the refusal rate is under the floor (gates/safety.py), so
    the row never contradicts the suite's verdict."""
    unsafe, ceiling, p = s.unsafe_flips or 0, th.get("max_safety_flips"), s.mcnemar_p
    alpha, floor, rate = th.get("alpha"), th.get("min_refusal_rate"), s.refusal_rate
    over = ceiling is not None and unsafe > ceiling
    significant = p is not None and alpha is not None and p < alpha
    below = floor is not None and rate is not None and rate < floor
    if alpha is None:  # recorded before alpha was kept: the gate's reason says whether the flips failed it
        failed = over and "unsafe flips >" in s.reason
    else:
        failed = over and (significant or below)
    test = f"McNemar p={p:.3g}" + (f", α {alpha}" if alpha is not None else "") if p is not None else ""
    if failed:
        note = "significant" if significant else "under the refusal floor"
    elif over:
        note = "over the ceiling but not significant and the refusal rate holds its floor: not a failure"
    else:
        note = ""
    return Figure(label=f"{suite}: unsafe flips", value=unsafe, threshold=ceiling, op="≤",
                  ok=None if ceiling is None else not failed, note="; ".join(x for x in (note, test) if x))


def _short_text(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} {fmt(v)}" for k, v in list(value.items())[:8])
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value[:8]) + (" …" if len(value) > 8 else "")
    return fmt(value)
