"""Stop strings are checked on token ids on the model's device (no host decode per step), on generated tokens
only: a single-character stop anywhere in the newest token, a longer one across tokens."""

from __future__ import annotations

import torch

from loopgate.evaluate.engine import _StopOnStrings
from loopgate.models import char_tokenizer


def stops(prompt: str, generated: list[str], stop: list[str]) -> list[bool]:
    tok = char_tokenizer()
    ids = [tok(prompt, add_special_tokens=False)["input_ids"] + tok("".join(g), add_special_tokens=False)["input_ids"]
           for g in generated]
    crit = _StopOnStrings(tok, len(prompt), stop, torch.device("cpu"))
    return crit(torch.tensor(ids), torch.zeros(len(ids), 1)).tolist()  # type: ignore[arg-type]


def test_single_character_stop_is_found_in_the_newest_token() -> None:
    assert stops("ab", [["c", "\n"], ["c", "d"], ["\n", "d"]], ["\n"]) == [True, False, False]


def test_longer_stop_is_found_across_generated_tokens_but_not_across_the_prompt() -> None:
    assert stops("xb", [["b", "a"], ["c", "a"], ["a", "c"]], ["ba"]) == [True, False, False]
    # "b" ends the prompt and "a" is the first generated token: the old engine did not stop there either
    assert stops("xb", [["a"]], ["ba"]) == [False]
