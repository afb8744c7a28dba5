"""``scorer: judge``: a model grades each generated answer against a rubric, and is measured against human labels.

The judge is a registered line's channel run in-process through this engine (greedy, like every evaluation), or
any OpenAI-compatible URL called with the ``openai`` SDK. Its answer is read as yes/no or the first number
(÷ ``scale``); an answer with neither scores 0 and the example records why — one unreadable answer is a graded
example, not a failed evaluation.

Calibration: the judge also grades the suite's human-labelled rows, and Cohen's κ between its pass/fail and the
labels is recorded in the evaluation (``judge_kappa``, ``judge_labels``). The regression gate lets a judge's
verdicts fail a release only when κ reaches the policy's ``judge_min_kappa`` (``gates/calibration.py``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loopgate.errors import DataError
from loopgate.evaluate.engine import EngineConfig, generate
from loopgate.evaluate.graders import GraderModel
from loopgate.evaluate.suites import Suite
from loopgate.records import ExampleResult
from loopgate.spec import JudgeSpec

PASS_SCORE = 0.5  # the engine's rule: a graded example passes from one half up
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def rubric_prompt(rubric: str, prompt: str, output: str, target: str) -> str:
    """The rubric with ``{prompt}``, ``{output}`` and ``{target}`` filled in (not ``str.format``: a rubric may hold
    other braces, and an answer's own braces must stay text)."""
    out = []
    for piece in re.split(r"(\{prompt\}|\{output\}|\{target\})", rubric):
        out.append({"{prompt}": prompt, "{output}": output, "{target}": target}.get(piece, piece))
    return "".join(out)


def parse_grade(answer: str, scale: float = 1.0) -> float | None:
    """A judge's answer as a score in [0, 1]: whichever comes first of yes (1) / no (0) and a number (÷ ``scale``,
    clipped); None when it holds neither."""
    word, number = _YES_NO.search(answer), _NUMBER.search(answer)
    if word is not None and (number is None or word.start() < number.start()):
        return 1.0 if word.group(1).lower() == "yes" else 0.0
    if number is not None:
        value = float(number.group()) / scale
        return min(1.0, max(0.0, value)) if math.isfinite(value) else None
    return None


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Cohen's κ of two raters' yes/no labels; NaN when chance agreement is total (both said one thing only).

    Written here rather than taken from scikit-learn's ``cohen_kappa_score`` (the same formula): scikit-learn is no
    dependency of Loopgate, and for two binary raters κ is four lines."""
    n = len(a)
    if n == 0 or n != len(b):
        raise ValueError("cohen_kappa needs two label lists of the same, non-zero length")
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    return (observed - chance) / (1 - chance) if chance < 1 else math.nan


class _LineJudge:
    """A registered version's weights, loaded once, answering rubric prompts greedily."""

    def __init__(self, grader: GraderModel, spec: JudgeSpec, config: EngineConfig | None) -> None:
        from loopgate.models import load_model

        assert grader.model is not None
        self.loaded = load_model(grader.model.base, grader.model.adapter, merge=True)
        self.spec, self.config = spec, config

    def answers(self, prompts: Sequence[str]) -> list[str]:
        gens = generate(self.loaded.model, self.loaded.tokenizer, prompts, max_new_tokens=self.spec.max_new_tokens,
                        stop=["\n"], config=self.config)
        return [g.text for g in gens]


class _UrlJudge:
    """An OpenAI-compatible server, asked at temperature 0 through the ``openai`` SDK."""

    def __init__(self, grader: GraderModel, spec: JudgeSpec) -> None:
        try:
            from openai import OpenAI
        except ImportError:
            raise DataError("a judge given by base_url is called with the openai SDK: pip install "
                            "'loopgate[judge]' (or openai)") from None
        key = os.environ.get(grader.api_key_env or "", "") if grader.api_key_env else "none"
        if grader.api_key_env and not key:
            raise DataError(f"the judge at {grader.base_url} takes its key from ${grader.api_key_env}, which is not "
                            "set; export it before evaluating")
        self.client = OpenAI(base_url=grader.base_url, api_key=key, max_retries=2)
        self.model, self.spec = grader.model_name or "", spec

    def answers(self, prompts: Sequence[str]) -> list[str]:
        from openai import OpenAIError

        out: list[str] = []
        try:
            for p in prompts:
                out.append(self._ask(p))
        except OpenAIError as err:
            raise DataError(f"the judge {self.model} at {self.client.base_url} failed: {err}") from None
        return out

    def _ask(self, prompt: str) -> str:
        if self.spec.api == "chat":
            chat = self.client.chat.completions.create(model=self.model, temperature=0.0,
                                                       max_tokens=self.spec.max_new_tokens,
                                                       messages=[{"role": "user", "content": prompt}])
            return chat.choices[0].message.content or ""
        done = self.client.completions.create(model=self.model, prompt=prompt, temperature=0.0,
                                              max_tokens=self.spec.max_new_tokens)
        return done.choices[0].text


@dataclass
class JudgeGrader:
    """The ``OutputGrader`` of a judge suite: scores answers, then records why unreadable ones scored 0 and how
    well the judge agrees with its human labels."""

    suite: str
    spec: JudgeSpec
    grader: GraderModel
    judge: Any  # _LineJudge | _UrlJudge: anything with answers(prompts) -> list[str]
    _reasons: list[str | None] = field(default_factory=list)

    def scores(self, prompts: Sequence[str], outputs: Sequence[str], targets: Sequence[str]) -> list[float]:
        """Each answer's score in [0, 1] from the judge's reading of the rubric."""
        answers = self.judge.answers([rubric_prompt(self.spec.rubric, p, o, t)
                                      for p, o, t in zip(prompts, outputs, targets, strict=True)])
        grades = [parse_grade(a, self.spec.scale) for a in answers]
        self._reasons = [None if g is not None else f"judge {self.grader.describe()} answered {a[:80]!r}: no yes/no "
                         "or number to read" for g, a in zip(grades, answers, strict=True)]
        return [0.0 if g is None else g for g in grades]

    def record(self, examples: list[ExampleResult]) -> dict[str, float]:
        """Write the unreadable answers' reasons onto ``examples``; the judge's figures for the evaluation."""
        for ex, why in zip(examples, self._reasons, strict=False):
            if why is not None:
                ex.reason = why
        figures = {"judge_unparsed": float(sum(r is not None for r in self._reasons))}
        return figures | self.calibration()

    def calibration(self) -> dict[str, float]:
        """Cohen's κ between the judge and the human labels (``judge_labels`` 0: the judge is not calibrated)."""
        labels = self.grader.labels
        if not labels:
            return {"judge_labels": 0.0}
        answers = self.judge.answers([rubric_prompt(self.spec.rubric, r.prompt, r.output, r.target) for r in labels])
        passed = [(parse_grade(a, self.spec.scale) or 0.0) >= PASS_SCORE for a in answers]
        human = [r.label for r in labels]
        agreement = sum(x == y for x, y in zip(passed, human, strict=True)) / len(labels)
        # κ is NaN when it is undefined; the engine keeps finite figures only, and a missing κ never unlocks a gate
        return {"judge_labels": float(len(labels)), "judge_kappa": cohen_kappa(passed, human),
                "judge_agreement": agreement}


def judge_grader(suite: Suite, config: EngineConfig | None = None) -> JudgeGrader | None:
    """The grader of a ``scorer: judge`` suite (its judge loaded or connected), None for any other suite."""
    spec = suite.spec.judge
    if suite.spec.scorer != "judge" or spec is None:
        return None
    grader = suite.grader
    if grader is None:
        raise DataError(f"suite '{suite.name}': its judge was not resolved; load the suite through the workspace "
                        "(the judge line's channel is read from the registry)")
    judge: Any = _UrlJudge(grader, spec) if grader.base_url is not None else _LineJudge(grader, spec, config)
    return JudgeGrader(suite=suite.name, spec=spec, grader=grader, judge=judge)
