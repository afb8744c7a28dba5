"""Reading a decision for the demo's story: one headline figure per gate, and the slack each check left.

A verdict alone does not say whether the story holds with margin. Every gate keeps its evidence; these
helpers turn it into one headline figure per gate and, per check, the slack left before the threshold
(positive: on the passing side). The demo prints the tightest ones, so a run that passes by luck shows it.
"""

from __future__ import annotations

from typing import Any

from loopgate.evaluate.metrics import mcnemar_exact
from loopgate.gates.evidence import RegressionEvidence
from loopgate.loop.outcomes import ReleaseOutcome
from loopgate.records import Decision, Verdict


def headline(gate: Any) -> str:
    """One short, checkable figure for a gate: the number a reviewer would look at first."""
    ev = gate.evidence
    if gate.name in ("regression", "inheritance"):
        rows = []
        for suite, r in ev.get("suites", {}).items():
            c = r if "delta" in r else min(r.get("checks", {}).values(), key=lambda x: x.get("delta", 0), default={})
            if "delta" in c:
                rows.append((c["delta"], f"{suite} {c['before_score']:.2f}→{c['after_score']:.2f}"))
        return min(rows)[1] if rows else gate.summary[:60]
    if gate.name == "safety":
        for r in ev.get("suites", {}).values():
            before = r.get("baseline_refusal_rate")
            was = f"{before:.2f}→" if before is not None else ""
            return f"refusal {was}{r['refusal_rate']:.2f}, {r.get('unsafe_flips', 0)} unsafe flips"
    if gate.name == "cost":
        failed = [c for c in ev.get("checks", []) if c.get("verdict") == "fail"]
        for c in sorted(failed, key=lambda c: -(c["value"] / c["limit"]) if c["limit"] else 0):
            name = c["figure"].replace("_", " ") + (f" on {c['suite']}" if c.get("suite") else "")
            return f"{name} ×{c['value']:.2f} (limit ×{c['limit']})" if c["kind"] == "ratio" else \
                f"{name} {c['value']:.3g} (limit {c['limit']})"
    return gate.summary[:60]


def margins(gate: Any) -> list[tuple[float, str]]:
    """(slack, description) for each check of a gate that has a threshold; slack < 0 means the check failed."""
    ev, th = gate.evidence, gate.evidence.get("thresholds", {})
    out: list[tuple[float, str]] = []
    if gate.name in ("regression", "inheritance"):
        tol = th.get("tolerance", 0.0)
        for suite, entry in ev.get("suites", {}).items():
            checks = entry.get("checks") or {"": entry}
            for role, c in checks.items():
                if "delta" not in c:
                    continue
                who = f"{suite} vs {role}" if role else suite
                out.append((c["delta"] + tol, f"{who} Δ{c['delta']:+.2f} (tolerance {tol})"))
                if gate.name == "regression" and "max_negative_flip_rate" in th:
                    ceiling = th["max_negative_flip_rate"]
                    nfr = c["negative_flip_rate"]
                    out.append((ceiling - nfr, f"{suite} negative flips {nfr:.2f} (ceiling {ceiling})"))
    elif gate.name == "safety":
        floor = th.get("min_refusal_rate", 0.0)
        for suite, r in ev.get("suites", {}).items():
            if "refusal_rate" in r:
                out.append((r["refusal_rate"] - floor, f"{suite} refusal {r['refusal_rate']:.2f} (floor {floor})"))
            if "unsafe_flips" in r and r.get("n_expected_refusals"):
                # unsafe flips fail once McNemar calls them significant: the spare flips, as a share of the prompts
                n, unsafe, safe = r["n_expected_refusals"], r["unsafe_flips"], r.get("safe_flips", 0)
                limit = next((k for k in range(th.get("max_safety_flips", 0) + 1, n + 1)
                              if mcnemar_exact(k, safe) < th.get("alpha", 0.05)), n + 1)
                out.append(((limit - 1 - unsafe) / n, f"{suite} {unsafe} unsafe flips ({limit} would fail)"))
    elif gate.name == "cost":
        for c in ev.get("checks", []):
            if c.get("value") is None or not c.get("limit"):
                continue
            # relative slack: how much of the budget is left (ratios and absolute limits alike)
            minimum = c["figure"].startswith("tokens_per_s")
            slack = (c["value"] - c["limit"]) / c["limit"] if minimum else (c["limit"] - c["value"]) / c["limit"]
            unit = "×" if c["kind"] == "ratio" else ""
            where = f" on {c['suite']}" if c.get("suite") else ""
            out.append((slack, f"{c['figure'].replace('_', ' ')}{where} {unit}{c['value']:.2f} "
                               f"(limit {unit}{c['limit']})"))
    return out


def tightest(decision: Decision, n: int = 3) -> str:
    """The ``n`` blocking checks closest to their thresholds, one per gate, tightest first."""
    per_gate: dict[str, tuple[float, str]] = {}
    for g in decision.gates:
        if g.blocking and g.verdict is Verdict.passed:
            found = margins(g)
            if found:
                per_gate[g.name] = min(found)
    rows = sorted((slack, f"{name} {text} slack {slack:+.2f}") for name, (slack, text) in per_gate.items())
    return "; ".join(text for _, text in rows[:n]) or "no thresholded check"


def deciding(o: ReleaseOutcome) -> tuple[str, str]:
    """The gate(s) that decided — failures first, then inconclusive ones — and the first one's headline."""
    d = o.decision
    # the most severe finding leads: an unsafe model matters more than a forgetful or a slow one
    severity = ["safety", "rollback", "inheritance", "regression", "cost", "approval", "plasticity"]
    gates = sorted(d.gates, key=lambda g: severity.index(g.name) if g.name in severity else len(severity))
    blocking = [g for g in gates if g.blocking and g.verdict is Verdict.failed]
    blocking += [g for g in gates if g.blocking and g.verdict is Verdict.inconclusive]
    if not blocking:
        reg = next(g for g in d.gates if g.name == "regression")
        return "all gates pass", headline(reg) if reg.evidence_as(RegressionEvidence).suites else "first release"
    return ", ".join(g.name for g in blocking), headline(blocking[0])
