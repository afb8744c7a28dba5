"""A custom reward module for the reward tests (imported by name, as a team's own code would be)."""

from __future__ import annotations


def shout(answer: str, target: str, prompt: str) -> float:
    return float(len(answer))
