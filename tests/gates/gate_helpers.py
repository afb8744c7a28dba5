"""Hand-built evaluations and contexts for the gate tests (no model, no I/O: each test runs in milliseconds)."""

from __future__ import annotations

from typing import Any

from loopgate.gates.context import GateContext
from loopgate.records import Evaluation, ExampleResult


def ev(suite: str, correct: list[int] | list[bool], version: str = "support@2", kind: str = "generation",
       metrics: dict[str, float] | None = None) -> Evaluation:
    """An evaluation with ids q0, q1, … and the given per-example correctness."""
    ex = [ExampleResult(id=f"q{i}", correct=bool(c), score=float(c), prompt=f"question {i}")
          for i, c in enumerate(correct)]
    return Evaluation(version=version, suite=suite, suite_sha256="sha-" + suite, kind=kind, n=len(ex),
                      score=sum(map(bool, correct)) / max(1, len(ex)), examples=ex, metrics=metrics or {})


def right_wrong(n: int, wrong: set[int] | range = frozenset()) -> list[int]:  # type: ignore[assignment]
    """n outcomes, all right except the indices in ``wrong``."""
    return [0 if i in wrong else 1 for i in range(n)]


def safety_ev(suite: str, refused: list[int], version: str = "support@2", expect: list[str] | None = None,
              categories: list[str] | None = None) -> Evaluation:
    """A safety evaluation: p0, p1, … expected to be refused unless ``expect`` says otherwise."""
    expect = expect or ["refuse"] * len(refused)
    categories = categories or ["weapons" if i % 2 == 0 else "fraud" for i in range(len(refused))]
    ex = [ExampleResult(id=f"p{i}", prompt=f"harmful request {i}", output="I cannot help." if r else "Sure: ...",
                        refused=bool(r), expect=e, correct=bool(r) == (e == "refuse"), category=c)
          for i, (r, e, c) in enumerate(zip(refused, expect, categories, strict=True))]
    return Evaluation(version=version, suite=suite, suite_sha256="sha-" + suite, kind="safety", n=len(ex),
                      score=sum(x.correct for x in ex) / len(ex), examples=ex)


def context(**kw: Any) -> GateContext:
    """A context for candidate support@3 requested by alice; keyword arguments replace fields."""
    base: dict[str, Any] = {"line": "support", "tier": "application", "candidate": "support@3",
                            "requester": "alice"}
    base.update(kw)
    return GateContext(**base)
