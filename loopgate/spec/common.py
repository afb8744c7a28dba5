"""What every part of the spec shares: the file name, tiers, the strict base model, bounds and name forms."""

from __future__ import annotations

import copy
import difflib
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

SPEC_FILE = "loopgate.yaml"


class Tier(StrEnum):
    """Where a line sits in the ecosystem tree; a parent is always of a strictly higher tier."""

    foundation = "foundation"
    industrial = "industrial"
    application = "application"
    app = "app"

    @property
    def rank(self) -> int:
        return _TIER_RANK[self.value]  # a dict lookup: sorting 10,000 lines by tier calls this per line


_TIER_RANK = {t.value: i for i, t in enumerate(Tier)}


class _Strict(BaseModel):
    # finite numbers only: YAML reads `.inf` and `.nan` as floats, and an infinite learning rate or a NaN
    # threshold would pass every comparison it meets (NaN compares false both ways)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# bounds that keep a typo from becoming an hours-long run or an allocation the machine cannot make
MAX_STEPS = 10_000_000
MAX_BATCH = 65_536
MAX_TOKENS = 1_048_576
SEED_LIMIT = 2**32  # numpy and torch seeds are unsigned 32-bit


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# the form of a user function's name (a suite's python scorer, a GRPO custom reward): dotted identifiers, a colon,
# an identifier; nothing else is ever imported or called
FUNCTION_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _article(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""

