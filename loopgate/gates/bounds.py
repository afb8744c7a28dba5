"""Comparisons of a measured figure with a limit a user wrote, exact at the boundary.

A limit is written as a short decimal (``tolerance: 0.15``) while the figure is computed in binary floating
point: 17/20 − 1 is −0.15000000000000002, so a plain ``<`` counts a drop of exactly 0.15 as beyond a 0.15
tolerance. The difference is rounded to :data:`DECIMALS` places before it is compared: rounding error is ~1e-16,
while two real figures over at most a million examples differ by at least 1e-6, so no real difference is lost.
(``math.isclose`` would need a tolerance tuned per figure; one rounding rule holds for every gate.)
"""

from __future__ import annotations

DECIMALS = 9


def _diff(value: float, limit: float) -> float:
    return round(value - limit, DECIMALS)


def exceeds(value: float, limit: float) -> bool:
    """``value > limit``, with a value equal to the limit up to float rounding counted as at the limit."""
    return _diff(value, limit) > 0


def below(value: float, limit: float) -> bool:
    """``value < limit``, with a value equal to the limit up to float rounding counted as at the limit."""
    return _diff(value, limit) < 0
