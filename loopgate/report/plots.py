"""Charts drawn with matplotlib (Agg, headless), returned as PNG bytes so that the HTML can embed them and the
Markdown can reference them as files."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: the report runs in CI and on servers without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from loopgate.evaluate.metrics import accuracy_matrix  # noqa: E402
from loopgate.loop.workspace import Workspace  # noqa: E402
from loopgate.report.content import latest_by_suite, suite_order, version_cost  # noqa: E402


class Plot(BaseModel):
    """One chart: a stable name (used for its file name), a title, a caption and the PNG bytes."""

    name: str
    title: str
    caption: str = ""
    png: bytes


class LineHistory(BaseModel):
    """A line's versions (oldest first) with their scores per suite and their cost figures."""

    line: str
    versions: list[str]
    suites: list[str]
    roles: list[str]
    matrix: list[list[float]]
    cost: list[dict[str, float]]


def line_history(ws: Workspace, line: str, price_per_hour: float | None = None) -> LineHistory:
    """The accuracy matrix R[version][suite] of a line (owned, inherited, then other suites) and its costs."""
    versions = [v.id for v in ws.store.versions(line)]
    evaluations = [ev for vid in versions for ev in latest_by_suite(ws.store.evaluations(vid)).values()]
    order = suite_order(ws, line, [ev.suite for ev in evaluations])
    evaluated = {ev.suite for ev in evaluations}
    order = [(s, role) for s, role in order if s in evaluated]
    suites = [s for s, _ in order]
    r = accuracy_matrix(evaluations, versions, suites)
    return LineHistory(line=line, versions=versions, suites=suites, roles=[role for _, role in order],
                       matrix=r.tolist(), cost=[version_cost(ws, v, price_per_hour) for v in versions])


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _short(version_id: str) -> str:
    return "@" + version_id.rpartition("@")[2]


def accuracy_heatmap(history: LineHistory, highlight: str | None = None) -> Plot | None:
    """Heat-map of R[version][suite]; grey cells were never evaluated; the highlighted version is boxed."""
    if not history.versions or not history.suites:
        return None
    r = np.array(history.matrix, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(history.suites), 1.2 + 0.45 * len(history.versions)))
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(r), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(history.suites)),
                  [f"{s}\n({role})" for s, role in zip(history.suites, history.roles, strict=True)], fontsize=8)
    ax.set_yticks(range(len(history.versions)), history.versions, fontsize=8)
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            if not math.isnan(r[i, j]):
                ax.text(j, i, f"{r[i, j]:.2f}", ha="center", va="center", fontsize=8)
    if highlight in history.versions:
        i = history.versions.index(highlight)
        ax.add_patch(Rectangle((-0.5, i - 0.5), len(history.suites), 1, fill=False,
                               edgecolor="black", linewidth=2))
    ax.set_title(f"{history.line}: score per suite (rows: versions)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    return Plot(name=f"{history.line}-accuracy-matrix", title=f"Accuracy matrix — {history.line}",
                caption="Score of each version (row) on each suite (column); grey: not evaluated.", png=_png(fig))


def score_trends(history: LineHistory, marks: Sequence[str] = ()) -> Plot | None:
    """Score per suite across the line's versions; dashed verticals mark the given versions."""
    if not history.versions or not history.suites:
        return None
    r = np.array(history.matrix, dtype=np.float64)
    x = np.arange(len(history.versions))
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for j, suite in enumerate(history.suites):
        ax.plot(x, r[:, j], marker="o", label=f"{suite} ({history.roles[j]})")
    for v in marks:
        if v in history.versions:
            ax.axvline(history.versions.index(v), color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, [_short(v) for v in history.versions])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"{history.line} version")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{history.line}: scores across versions", fontsize=10)
    return Plot(name=f"{history.line}-trends", title=f"Score trends — {history.line}",
                caption="Score per suite for every version of the line (dashed: the versions compared).",
                png=_png(fig))


def cost_trends(history: LineHistory, marks: Sequence[str] = ()) -> Plot | None:
    """Latency p95 and mean output tokens across the line's versions; None when no version has cost figures."""
    panels = [(k, label) for k, label in (("latency_p95_ms", "latency p95 (ms)"),
                                          ("mean_output_tokens", "mean output tokens"),
                                          ("tokens_per_s", "tokens / s"))
              if any(k in c for c in history.cost)]
    if not panels:
        return None
    x = np.arange(len(history.versions))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.0), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        values = [c.get(key, math.nan) for c in history.cost]
        ax.bar(x, values, color=["#dd8452" if v in marks else "#4c72b0" for v in history.versions])
        ax.set_xticks(x, [_short(v) for v in history.versions])
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{history.line}: cost across versions", fontsize=10)
    fig.tight_layout()
    return Plot(name=f"{history.line}-cost", title=f"Cost — {history.line}",
                caption="Serving cost per version, from the engine figures of its evaluations (orange: the versions "
                "compared).", png=_png(fig))
