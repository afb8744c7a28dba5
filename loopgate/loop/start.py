"""Where an update of a line starts: one answer for ``update``, ``tune`` and every other trainer in ``loop/``.

There used to be two copies of this (``update`` and ``tune``) and they drifted: ``tune`` could not start from an
adapter production that ``update`` trained from without complaint. :func:`start_point` is now the only one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loopgate.errors import LoopgateError
from loopgate.loop.context import line_context
from loopgate.loop.versions import adapter_parts
from loopgate.loop.workspace import Workspace
from loopgate.spec import LineSpec, Tier
from loopgate.train.methods import method_facts


@dataclass(frozen=True)
class StartPoint:
    """What a run trains from: the version (``None``: a fresh tiny model) and the folders to load for it."""

    version: str | None  # the version trained from (recorded as ``built_from``)
    parent_dir: Path | None  # the full model the method loads (an adapter version's base)
    adapter_dir: Path | None  # an adapter the method continues, or merges in memory for a full update
    base_version: str | None  # what an adapter the run produces is rooted on


def model_line(ws: Workspace, line: str) -> LineSpec:
    """The spec of ``line``, refused when it is an app (apps have no weights of their own to update)."""
    spec = line_context(ws, line).spec
    if spec.tier is Tier.app:
        raise LoopgateError(f"'{line}' is an app: update its model line '{spec.parent}' instead")
    return spec


def start_version(ws: Workspace, line: str) -> str | None:
    """Where an update of ``line`` starts: its production version, else its latest *registered* version,
    else the parent's production — never a candidate the gates rejected."""
    prod = ws.store.channel(line, "production")
    if prod is not None:
        return prod
    registered = [v for v in ws.store.versions(line) if v.source == "register"]
    if registered:
        return registered[-1].id
    parent = line_context(ws, line).spec.parent
    return ws.store.channel(parent, "production") if parent else None


def start_point(ws: Workspace, line: str, method: str, start: str | None = None) -> StartPoint:
    """The folders an update of ``line`` with ``method`` trains from (``start``: the version, when already known).

    A method that continues adapters, started from an adapter version, keeps training that adapter, rooted on the
    same base version, so that a foundation upgrade can re-attach it. Any other start is a full model: a full
    method started from an adapter version trains its base + adapter merged in memory, and an adapter it makes is
    rooted on the start version itself."""
    start = start_version(ws, line) if start is None else start
    if start is None:
        return StartPoint(None, None, None, None)
    sv = ws.store.version(start)
    parent_dir, adapter_dir = adapter_parts(ws, start)
    if method_facts(method).continues_adapter and sv.kind == "adapter" and sv.base_version:
        return StartPoint(start, parent_dir, adapter_dir, sv.base_version)
    return StartPoint(start, parent_dir, adapter_dir, start)



def parent_production(ws: Workspace, line: str, spec: LineSpec) -> str | None:
    """The production version of ``line``'s parent (what a new version is built on), refused when the parent has
    none yet; ``None`` for a line with no parent."""
    if not spec.parent:
        return None
    version = ws.store.channel(spec.parent, "production")
    if version is None:
        raise LoopgateError(f"line '{line}' has a parent '{spec.parent}' with no production version; "
                            f"release a version of '{spec.parent}' first")
    return version
