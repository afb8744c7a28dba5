"""Rewards of a ``grpo`` update, declared in ``loopgate.yaml`` (``recipe.grpo.rewards``).

Each row of the update data is ``{"prompt", "completion"}``; the completion is the row's *target*, as in a
suite. A sampled answer (its first line, as the suites read it) is scored by every reward term and the terms are
summed with their weights:

- ``exact``: the answer equals the target (``normalize``: stripped, lower-cased, inner spaces collapsed);
- ``contains``: the target occurs in the answer;
- ``regex``: ``pattern`` matches the answer; ``{target}`` in the pattern stands for the escaped target;
- ``numeric``: the first number in the answer is within ``tolerance`` of the first number in the target;
- ``custom``: ``function: "package.module:name"``, code the team owns and ships with its checkout. The dotted
  name is checked, the module imported, the attribute looked up — nothing from the YAML is evaluated. It is
  called as ``name(answer=..., target=..., prompt=...)`` and returns a float.

Safety is a constraint, not a hope: rows whose target is a refusal (the line's safety prompts, e.g. replayed from
its safety suite's ``train_path``) are scored only by refusing — ``safety_weight`` when the answer carries one of
``refusal_markers``, else 0 — so the policy is never paid for complying with a harmful request.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from loopgate.errors import SpecError
from loopgate.spec import FUNCTION_NAME, GRPOSettings, RewardSpec

Score = Callable[[str, str, str], float]  # (answer, target, prompt) → reward
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def answer_of(completion: str) -> str:
    """The answer a suite would read from a completion: its first line."""
    return completion.split("\n", 1)[0]


def _norm(text: str, normalize: bool) -> str:
    return " ".join(text.lower().split()) if normalize else text


def _number(text: str) -> float | None:
    m = _NUMBER.search(text.replace(",", ""))
    return float(m.group(0)) if m else None


def load_custom(dotted: str) -> Callable[..., float]:
    """Import ``package.module:function`` (checked: a dotted name, an importable module, a callable)."""
    if not FUNCTION_NAME.match(dotted):
        raise SpecError(f"reward function '{dotted}' is not of the form 'package.module:function' (identifiers only); "
                        "name a function in code your team owns")
    module_name, attr = dotted.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SpecError(f"reward function '{dotted}': cannot import '{module_name}' ({err}); install or add the "
                        "package that holds it to the training environment") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SpecError(f"reward function '{dotted}': '{module_name}' has no callable '{attr}'")
    return fn  # type: ignore[no-any-return]


def rule(spec: RewardSpec) -> Score:
    """One reward term as a function of (answer, target, prompt)."""
    n = spec.normalize
    if spec.kind == "exact":
        return lambda a, t, p: float(_norm(a, n) == _norm(t, n))
    if spec.kind == "contains":
        return lambda a, t, p: float(_norm(t, n) in _norm(a, n))
    if spec.kind == "regex":
        if not spec.pattern:
            raise SpecError("a 'regex' reward needs a 'pattern' (use {target} for the row's target)")
        pattern = spec.pattern
        try:
            re.compile(pattern.replace("{target}", ""))
        except re.error as err:
            raise SpecError(f"reward pattern {pattern!r} is not a valid regular expression: {err}") from None
        flags = re.IGNORECASE if n else 0
        return lambda a, t, p: float(re.search(pattern.replace("{target}", re.escape(t.strip())), a, flags)
                                     is not None)
    if spec.kind == "numeric":
        tol = spec.tolerance

        def numeric(a: str, t: str, p: str) -> float:
            got, want = _number(a), _number(t)
            return float(got is not None and want is not None and abs(got - want) <= tol)
        return numeric
    if not spec.function:
        raise SpecError("a 'custom' reward needs 'function: package.module:name'")
    fn = load_custom(spec.function)

    def custom(a: str, t: str, p: str) -> float:
        value = float(fn(answer=a, target=t, prompt=p))
        if math.isnan(value):
            raise ValueError(f"reward function {spec.function} returned NaN for {p!r}")
        return value
    return custom


def is_refusal(text: str, markers: Sequence[str]) -> bool:
    low = text.lower()
    return any(m.lower() in low for m in markers)


class Reward:
    """The total reward of a ``grpo`` update, in the form trl's ``GRPOTrainer`` calls it."""

    def __init__(self, settings: GRPOSettings) -> None:
        self.settings = settings
        self.terms = [(spec.weight, rule(spec)) for spec in settings.rewards]
        self.__name__ = "loopgate_reward"  # trl logs rewards by function name

    def is_safety_row(self, target: str) -> bool:
        return is_refusal(target, self.settings.refusal_markers)

    def score(self, answer: str, target: str, prompt: str) -> float:
        if self.is_safety_row(target):
            return self.settings.safety_weight * float(is_refusal(answer, self.settings.refusal_markers))
        return sum(w * term(answer, target, prompt) for w, term in self.terms)

    def __call__(self, prompts: list[Any], completions: list[Any], target: list[str], **_: Any
                 ) -> list[float | None]:
        return [self.score(answer_of(str(c)), t, str(p)) for p, c, t in zip(prompts, completions, target, strict=True)]
