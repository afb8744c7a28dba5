"""Planning a propagation wave: which downstream lines a new version would re-derive, and how.

Registry reads and the spec only — no model library is imported, and the registry is read a fixed number of
times however many lines the ecosystem has (``loopgate plan`` on 10,000 lines stays interactive). The wave
itself runs in :mod:`.propagation`.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from loopgate.loop.architecture import SAME_SHAPE_STRATEGIES, architecture, differences
from loopgate.loop.outcomes import PlanStep
from loopgate.loop.workspace import Workspace
from loopgate.spec import Tier, plan_strategies
from loopgate.store.pins import line_pins


def strategies_for(ws: Workspace, line: str, *, has_adapter: bool, shapes: bool | None) -> list[str]:
    """The line's declared transfer strategies (in its order), or every applicable one, cheapest first."""
    declared = ws.eco.lines[line].transfer
    if declared is None:
        return plan_strategies(has_adapter, shapes)
    # a declared strategy that moves weights cannot apply across architectures: not listed, never tried
    return [s for s in declared if shapes is not False or s not in SAME_SHAPE_STRATEGIES]


def plan(ws: Workspace, version_id: str) -> list[PlanStep]:
    """The downstream wave of a version: every descendant line in tier order and the strategies to try; a
    pinned line, and every line below it, stays where it is."""
    v = ws.store.version(version_id)
    prods = ws.store.production_links()
    pins = line_pins(ws.store)
    held: set[str] = set()  # pinned lines and the lines below them: the wave does not reach them
    wave: list[dict[str, Any]] = []
    new_arch = architecture(ws, version_id)
    old_archs: dict[str, dict[str, Any] | None] = {}  # a direct child's old parent version → its architecture
    for d in ws.eco.descendants(v.line):
        spec = ws.eco.lines[d]
        if spec.tier is Tier.app:
            assert spec.app is not None
            wave.append(dict(line=d, tier=spec.tier.value, parent=spec.parent,
                             action=f"follows {spec.parent}/{spec.app.channel}"))
            continue
        pv = prods.get(d)
        if d in pins or spec.parent in held:
            held.add(d)
            why = pins[d].note if d in pins else f"stays: its parent line {spec.parent} is pinned"
            wave.append(dict(line=d, tier=spec.tier.value, parent=spec.parent, current=pv.id if pv else None,
                             built_on=pv.parent_version if pv else None, action=why))
            continue
        if pv is None:
            wave.append(dict(line=d, tier=spec.tier.value, parent=spec.parent,
                             action="no production version: nothing to re-derive"))
            continue
        # a direct child moves from its old parent version to this one: known shapes when they differ (deeper lines
        # move onto versions not built yet: unknown, assumed to match)
        shapes: bool | None = None
        if spec.parent == v.line and pv.parent_version and new_arch is not None:
            if pv.parent_version not in old_archs:
                old_archs[pv.parent_version] = architecture(ws, pv.parent_version)
            shapes = False if differences(old_archs[pv.parent_version], new_arch) else None
        wave.append(dict(line=d, tier=spec.tier.value, parent=spec.parent, current=pv.id,
                         built_on=pv.parent_version, action="re-derive by capability transfer, then gate",
                         strategies=strategies_for(ws, d, has_adapter=pv.kind == "adapter", shapes=shapes)))
    return _WAVE.validate_python(wave)  # one validation call for the whole wave, in pydantic-core


_WAVE = TypeAdapter(list[PlanStep])
