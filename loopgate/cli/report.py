"""Reports and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopgate.cli.app import JsonOpt, WorkspaceOpt, app, emit, err, open_workspace, out


@app.command()
def report(version: str, out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
           workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Release notes and a model card for VERSION, as Markdown and a self-contained HTML page with plots."""
    from loopgate.report import build_report

    ws = open_workspace(workspace)
    paths = build_report(ws, version, out_dir or ws.root / "reports" / version)
    if json_out:
        emit(paths)
        return
    out.print(f"release notes: {paths.markdown}\nmodel card:    {paths.model_card}\nHTML:          {paths.html}")


@app.command()
def demo(workspace: WorkspaceOpt = None,
         quick: Annotated[bool, typer.Option("--quick", help="A reduced run (used by the tests).")] = False,
         seed: Annotated[int, typer.Option("--seed", help="Seed of every training run and of the world's "
                                           "data.")] = 0,
         story: Annotated[str, typer.Option("--story", help="Which story: 'ecosystem' (the closed loop) or "
                                            "'plasticity' (updates erode plasticity, a remedy restores it).")
                          ] = "ecosystem",
         json_out: JsonOpt = False) -> None:
    """Build a small real ecosystem and run it through the whole closed loop (minutes on a CPU).

    Exits 1 (after the summary) when a step's measured outcome is not the one the story tells."""
    from loopgate.demo import run_demo

    if story not in ("ecosystem", "plasticity"):
        raise typer.BadParameter(f"unknown story '{story}'; choose 'ecosystem' or 'plasticity'", param_hint="--story")
    if story == "plasticity":
        from loopgate.demo.plasticity import run_plasticity_story

        result = run_plasticity_story(workspace or Path("demo-plasticity"), quick=quick, seed=seed,
                                      console=err if json_out else out)
    else:
        result = run_demo(workspace or Path("demo-workspace"), quick=quick, seed=seed,
                          console=err if json_out else out)
    if json_out:
        emit(result)
    if not result["story_holds"]:
        raise typer.Exit(1)
