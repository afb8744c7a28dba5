"""What each dashboard page shows, gathered with bounded reads, and the Jinja environment that draws it.

The pages' data live beside this module, one concern each: :mod:`.lineage` (the graph), :mod:`.version` (a
version's and a line's page) and :mod:`.ledger` (the ledger and its verification); they are re-exported here
so the routes (and tests) name one module."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

from loopgate.report.evidence import gate_view
from loopgate.report.render import FILTERS, TEMPLATES
from loopgate.server.dashboard.ledger import LedgerView, ledger_page_view, verify_now
from loopgate.server.dashboard.lineage import TIERS, Edge, Graph, Node, lineage_graph
from loopgate.server.dashboard.version import EvalRow, LinePage, VersionPage, line_page, version_page

__all__ = ["TIERS", "Edge", "EvalRow", "Graph", "LedgerView", "LinePage", "Node", "VersionPage", "brief",
           "environment", "ledger_page_view", "line_page", "lineage_graph", "render", "verify_now", "version_page"]

HERE = Path(__file__).parent / "templates"


@cache
def environment() -> Environment:
    """Dashboard templates first, then the report's (the shared evidence macros and style sheet)."""
    env = Environment(loader=ChoiceLoader([FileSystemLoader(str(HERE)), FileSystemLoader(str(TEMPLATES))]),
                      autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    env.filters["brief"] = brief
    env.globals["gate_view"] = gate_view
    return env


def brief(value: Any, limit: int = 90) -> str:
    """A ledger payload value in words: hashes cut to 12 characters, mappings as ``key value`` pairs."""
    if isinstance(value, dict):
        text = ", ".join(f"{k} {brief(v, limit)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(brief(v, limit) for v in value) or "none"
    elif value is None:
        text = "—"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            text = text[:12]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(template: str, **context: Any) -> str:
    context.setdefault("may", {})
    context.setdefault("msg", "")
    context.setdefault("ecosystem", "")
    context.setdefault("csrf", "")
    return environment().get_template(template).render(**context)
