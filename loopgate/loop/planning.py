"""Planning a propagation wave: which downstream lines a new version would re-derive, and how.

Registry reads and the spec only — no model library is imported, and the registry is read a fixed number of
times however many lines the ecosystem has (``loopgate plan`` on 10,000 lines stays interactive). The wave
itself runs in :mod:`.propagation`.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from loopgate.loop.outcomes import PlanStep
from loopgate.loop.workspace import Workspace
from loopgate.spec import Tier, plan_strategies


def strategies_for(ws: Workspace, line: str, *, has_adapter: bool, shapes: bool | None) -> list[str]:
    """The line's declared transfer strategies (in its order), or every applicable one, cheapest first."""
    declared = ws.eco.lines[line].transfer
    return list(declared) if declared is not None else plan_strategies(has_adapter, shapes)


def plan(ws: Workspace, version_id: str) -> list[PlanStep]:
    """The downstream wave of a version: every descendant line in tier order and the strategies to try."""
    v = ws.store.version(version_id)
    prods = ws.store.production_links()
    wave: list[dict[str, Any]] = []
    for d in ws.eco.descendants(v.line):
        spec = ws.eco.lines[d]
        if spec.tier is Tier.app:
            assert spec.app is not None
            wave.append(dict(line=d, tier=spec.tier.value, parent=spec.parent,
                             action=f"follows {spec.parent}/{spec.app.channel}"))
            continue
        pv = prods.get(d)
        if pv is None:
            wave.append(dict(line=d, tier=spec.tier.value, parent=spec.parent,
                             action="no production version: nothing to re-derive"))
            continue
        wave.append(dict(line=d, tier=spec.tier.value, parent=spec.parent, current=pv.id,
                         built_on=pv.parent_version, action="re-derive by capability transfer, then gate",
                         strategies=strategies_for(ws, d, has_adapter=pv.kind == "adapter", shapes=None)))
    return _WAVE.validate_python(wave)  # one validation call for the whole wave, in pydantic-core


_WAVE = TypeAdapter(list[PlanStep])
