"""``scorer: python``: a team's own function scores each generated answer.

The suite names it as ``function: "package.module:function"`` (the spec checks the form, as it does for a GRPO
custom reward); it is imported with ``importlib`` — nothing from the YAML is evaluated — and called as
``function(prompt, output, row)``, where ``row`` is the suite's JSONL row as written. It returns a bool or a float
in [0, 1]: the example's ``score``; the example is ``correct`` when the score is at least 0.5. A suite whose scores
are not all 0 or 1 is *graded*: the paired gates compare mean scores (``loopgate.evaluate.metrics``).

The module's source file is hashed into the suite's identity, so editing the function re-scores every version
(its imports are not hashed: pin them like any dependency).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loopgate.errors import DataError, SpecError
from loopgate.evaluate.metrics import bootstrap_ci
from loopgate.hashing import sha256_bytes
from loopgate.spec import FUNCTION_NAME

ScoreFunction = Callable[[str, str, dict[str, Any]], Any]


def _parts(dotted: str, where: str) -> tuple[str, str]:
    if not FUNCTION_NAME.match(dotted):
        raise SpecError(f"{where}: scorer function '{dotted}' is not of the form 'package.module:function' "
                        "(identifiers only); name a function in code your team owns")
    module_name, attr = dotted.split(":")
    return module_name, attr


def function_source_sha256(dotted: str, where: str) -> str:
    """sha256 of the source file of the module that holds ``dotted`` (found without running that module)."""
    module_name, _ = _parts(dotted, where)
    try:
        found = importlib.util.find_spec(module_name)  # imports the parent packages, which are the team's code
    except Exception as err:
        found, reason = None, f"{type(err).__name__}: {err}"
    else:
        reason = "no such module"
    if found is None or found.origin is None or not Path(found.origin).is_file():
        raise SpecError(f"{where}: scorer function '{dotted}': cannot find module '{module_name}' ({reason}); "
                        "install the package that holds it, or put its folder on PYTHONPATH")
    return sha256_bytes(Path(found.origin).read_bytes())


def load_function(dotted: str, where: str) -> ScoreFunction:
    """Import ``package.module:function`` (checked: a dotted name, an importable module, a callable)."""
    module_name, attr = _parts(dotted, where)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the team's module failing at import is their error to fix, not a traceback
        raise SpecError(f"{where}: scorer function '{dotted}': cannot import '{module_name}' "
                        f"({type(err).__name__}: {err})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SpecError(f"{where}: scorer function '{dotted}': '{module_name}' has no callable '{attr}'")
    return fn  # type: ignore[no-any-return]


def _as_score(value: Any, dotted: str, where: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0:
        return float(value)
    raise DataError(f"{where}: scorer function '{dotted}' returned {value!r}; it must return a bool or a number "
                    "in [0, 1]")


def python_scores(dotted: str, suite: str, rows: Sequence[tuple[str, dict[str, Any]]], prompts: Sequence[str],
                  outputs: Sequence[str]) -> list[float]:
    """The function's score of each (row id and row, prompt, output); an error names the row that raised it."""
    fn = load_function(dotted, f"suite '{suite}'")
    scores: list[float] = []
    for (row_id, row), prompt, output in zip(rows, prompts, outputs, strict=True):
        where = f"suite '{suite}', row '{row_id}'"
        try:
            value = fn(prompt, output, dict(row))  # a copy: one row's scoring cannot change the next one's input
        except Exception as err:  # the user's code: report it as their error on this row, not as ours
            raise DataError(f"{where}: scorer function '{dotted}' raised {type(err).__name__}: {err}; fix the "
                            "function (it is called as function(prompt, output, row))") from None
        scores.append(_as_score(value, dotted, where))
    return scores


def is_graded(scores: Sequence[float]) -> bool:
    """Whether any score is partial credit (neither 0 nor 1): then means, not counts, are compared."""
    return any(s not in (0.0, 1.0) for s in scores)


def bootstrap_ci_of_mean(scores: Sequence[float]) -> tuple[float, float, float]:
    """A graded suite's score: the mean of its examples' scores, with the percentile-bootstrap interval of it."""
    low, high = bootstrap_ci(scores)
    return sum(scores) / len(scores), low, high
