"""``loopgate report``: release notes and a model card for one version, and an HTML page for a whole run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from loopgate.loop.versions import ecosystem_status
from loopgate.loop.workspace import Workspace
from loopgate.report.card import model_card
from loopgate.report.content import release_notes
from loopgate.report.evidence import lookup_from_store
from loopgate.report.plots import Plot, accuracy_heatmap, cost_trends, line_history, score_trends
from loopgate.report.render import render
from loopgate.spec import Tier


class ReportPaths(BaseModel):
    """The files one ``build_report`` wrote."""

    markdown: Path
    html: Path
    model_card: Path
    plots: list[Path]


def file_stem(version_id: str) -> str:
    """``support@3`` → ``support-3`` (``@`` is awkward in URLs and some shells)."""
    return version_id.replace("@", "-")


def build_report(ws: Workspace, version_id: str, out_dir: Path) -> ReportPaths:
    """Write release notes and a model card for ``version_id`` (Markdown), a self-contained HTML page with
    both, and the plots as PNG files beside the Markdown."""
    notes = release_notes(ws, version_id)
    card = model_card(ws, notes)
    version = notes.version
    history = line_history(ws, version.line, notes.price_per_hour)
    marks = [v for v in (notes.baseline.id if notes.baseline else None, version.id) if v]
    plots = [p for p in (accuracy_heatmap(history, highlight=version.id), score_trends(history, marks),
                         cost_trends(history, marks)) if p is not None]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = file_stem(version.id)
    files = {p.name: f"{stem}.{p.name.removeprefix(version.line + '-')}.png" for p in plots}
    plot_paths = []
    for p in plots:
        path = out_dir / files[p.name]
        path.write_bytes(p.png)
        plot_paths.append(path)
    md_path, card_path, html_path = (out_dir / f"{stem}.release-notes.md", out_dir / f"{stem}.model-card.md",
                                     out_dir / f"{stem}.html")
    accuracy = next((files[p.name] for p in plots if p.name.endswith("accuracy-matrix")), None)
    md_path.write_text(render("release_notes.md.j2", notes=notes, channels=card.channels, plots=plots, files=files,
                              model_card_file=card_path.name), encoding="utf-8")
    card_path.write_text(render("model_card.md.j2", card=card, accuracy_file=accuracy,
                                replaces=notes.baseline.id if notes.baseline else None,
                                replaces_reason=notes.baseline_reason), encoding="utf-8")
    html_path.write_text(render("report.html.j2", notes=notes, card=card, plots=plots,
                                lookup=lookup_from_store(ws.store.evaluations)), encoding="utf-8")
    return ReportPaths(markdown=md_path, html=html_path, model_card=card_path, plots=plot_paths)


def build_run_report(ws: Workspace, out_dir: Path, title: str, steps: list[dict[str, Any]]) -> Path:
    """One self-contained HTML page for a whole run: the ecosystem tree, the given steps (each a dict such as
    ``{"step", "candidate", "verdict", "deciding figure"}``), every decision with its gates, and plots."""
    status = [r.model_dump() for r in ecosystem_status(ws)]  # the template reads plain mappings
    children: dict[str, list[dict[str, Any]]] = {row["line"]: [] for row in status}
    roots = []
    for row in status:
        if row["parent"] in children:
            children[row["parent"]].append(row)
        else:
            roots.append(row)
    columns: list[str] = []
    for step in steps:
        columns.extend(k for k in step if k not in columns)
    plots: list[Plot] = []
    for row in status:
        if row["tier"] == Tier.app.value or row["latest"] is None:
            continue
        price = ws.eco.policy_for(row["line"]).release.price_per_hour
        history = line_history(ws, row["line"], price)
        marks = [v for v in (row["channels"].get("production"),) if v]
        plots.extend(p for p in (accuracy_heatmap(history, highlight=marks[0] if marks else None),
                                 score_trends(history, marks)) if p is not None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "run-report.html"
    path.write_text(render("run.html.j2", title=title, ecosystem=ws.eco.name, roots=roots, children=children,
                           steps=steps, columns=columns, decisions=ws.store.decisions(),
                           ledger_entries=len(ws.store.ledger()), plots=plots,
                           lookup=lookup_from_store(ws.store.evaluations)), encoding="utf-8")
    return path
