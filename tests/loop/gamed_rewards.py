"""A reward a team might write by mistake: it pays for length, so a policy can game it (used by the GRPO tests
as ``gamed_rewards:longer_is_better``, imported by name like any custom reward)."""

from __future__ import annotations


def longer_is_better(answer: str, target: str, prompt: str) -> float:
    """One point per character, up to 40: nothing about being right."""
    return min(len(answer), 40) / 10.0
