"""Jinja2 environments and the filters the templates share.

HTML autoescapes everything (user text — prompts, outputs, descriptions, reasons — can hold markup).
Markdown has no autoescape, so its templates pass user text through ``md`` (entities, table pipes) or
``mdcode`` (a verbatim code span, where markup is inert).
"""

from __future__ import annotations

import base64
import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from loopgate.report.evidence import gate_view

TEMPLATES = Path(__file__).parent / "templates"
EVIDENCE_CHARS = 400


def num(value: Any, digits: int = 3) -> str:
    """A figure with fixed decimals; an em dash when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def signed(value: float | None, digits: int = 3) -> str:
    """A difference with its sign always shown (``+0.100``, ``-0.200``)."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value:+.{digits}f}"


def ci(low: float | None, high: float | None, digits: int = 3, sign: bool = False) -> str:
    """``[low, high]`` or an em dash."""
    if low is None or high is None:
        return "—"
    f = signed if sign else num
    return f"[{f(low, digits)}, {f(high, digits)}]"


def short(sha: str | None, n: int = 12) -> str:
    return (sha or "")[:n]


def value_text(value: Any, limit: int = EVIDENCE_CHARS) -> str:
    """A setting or evidence value as one line: scalars as they are, the rest as compact JSON (truncated)."""
    if isinstance(value, (int, float, bool)) or value is None:
        return num(value, 4) if isinstance(value, float) else ("—" if value is None else num(value))
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def md(text: Any) -> str:
    """User text for Markdown prose and table cells: HTML entities, escaped pipes, one line."""
    s = str(text if text is not None else "")
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return re.sub(r"\s*\n\s*", " ", s)


def mdcode(text: Any) -> str:
    """User text as a Markdown code span (markup inside stays inert); newlines shown as ⏎."""
    if text is None:
        return "—"
    s = str(text).replace("\r", "").replace("\n", "⏎")
    if not s:
        return "(empty)"
    run = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (run + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or run else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def verdict_class(value: Any) -> str:
    v = str(getattr(value, "value", value))
    return {"pass": "pass", "fail": "fail", "inconclusive": "inconclusive"}.get(v, "other")


def verdict_text(value: Any) -> str:
    return str(getattr(value, "value", value))


FILTERS = {"num": num, "signed": signed, "ci": ci, "short": short, "value_text": value_text, "md": md,
           "mdcode": mdcode, "data_uri": data_uri, "verdict_class": verdict_class, "verdict": verdict_text}


@cache
def environment(kind: str) -> Environment:
    """``html`` (autoescaped) or ``md`` environment over the package templates."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=kind == "html",
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    env.globals["ci"] = ci
    env.globals["gate_view"] = gate_view
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>``; the extension (``.html.j2`` / ``.md.j2``) picks the escaping."""
    kind = "html" if template.endswith(".html.j2") else "md"
    return environment(kind).get_template(template).render(**context)
