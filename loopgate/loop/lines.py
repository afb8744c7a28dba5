"""The ecosystem's lines as front ends list them."""

from __future__ import annotations

from loopgate.loop.workspace import Workspace


def tier_order(ws: Workspace) -> list[str]:
    """The spec's lines in tier order, in spec order within a tier (computed once: the spec is fixed while a
    workspace is open)."""
    cached: list[str] | None = getattr(ws, "_tier_order", None)
    if cached is None:
        names = list(ws.eco.lines)
        at = {n: i for i, n in enumerate(names)}
        cached = sorted(names, key=lambda n: (ws.eco.lines[n].tier.rank, at[n]))
        ws._tier_order = cached  # type: ignore[attr-defined]
    return cached
