"""Workspace and registry commands: init, register, status, versions, lineage, channels, gc."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.tree import Tree

from loopgate import loop
from loopgate.cli.app import JsonOpt, WorkspaceOpt, app, emit, err, open_workspace, out, table
from loopgate.loop.architecture import architecture_warning
from loopgate.loop.audit import collect_garbage
from loopgate.loop.versions import channel_report, line_versions
from loopgate.loop.workspace import Workspace, default_workspace


@app.command()
def init(path: Annotated[Path | None, typer.Argument(help="Folder to initialise (default: --workspace, "
                                                     "$LOOPGATE_WORKSPACE or the current folder).")] = None,
         workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Create a workspace: a starter loopgate.yaml (kept if present) and the registry in .loopgate/."""
    ws, created = Workspace.init(path or workspace or default_workspace())
    if json_out:
        emit({"workspace": str(ws.root.resolve()), "spec_created": created, "lines": list(ws.eco.lines)})
        return
    what = "created a starter loopgate.yaml" if created else "kept the existing loopgate.yaml"
    out.print(f"Initialised workspace [bold]{ws.root.resolve()}[/] ({what}; {len(ws.eco.lines)} lines).")


@app.command()
def register(line: Annotated[str, typer.Argument(help="Line to add a version to.")],
             model: Annotated[Path, typer.Option("--model", help="A local Hugging Face model (or PEFT adapter) "
                                                  "directory with safetensors weights.")],
             base: Annotated[str | None, typer.Option(help="For an adapter: the version it was trained on.")] = None,
             note: Annotated[str, typer.Option(help="Free text kept in the provenance.")] = "",
             actor: Annotated[str, typer.Option("--as", help="Who registers it.")] = "loopgate",
             workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Register an externally trained model directory as a new version of LINE (not released yet)."""
    ws = open_workspace(workspace)
    v = loop.register_model(ws, line, model, base=base, note=note, actor=actor)
    warning = architecture_warning(ws, v.id)
    if warning:
        err.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    if json_out:
        emit(v.model_dump(mode="json") | {"warnings": [warning] if warning else []})
        return
    out.print(f"Registered [bold]{v.id}[/] ({v.kind}, {len(v.files)} files). "
              f"Release it with 'loopgate release {v.id}'.")


@app.command()
def status(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Every line: tier, parent, channels, latest version, and whether it is pinned (`loopgate pin`, or left on an
    old parent version by a wave)."""
    ws = open_workspace(workspace)
    rows = loop.ecosystem_status(ws)
    if json_out:
        emit({"ecosystem": ws.eco.name, "lines": rows})
        return
    columns = ("line", "tier", "parent", "production", "canary", "latest", "note")
    cells = [(r.line, r.tier, r.parent or "", r.channels.get("production") or "—", r.channels.get("canary") or "",
              r.latest or "—", r.note) for r in rows]
    if len(cells) > PLAIN_ABOVE:
        plain_table(f"ecosystem {ws.eco.name} ({len(cells)} lines)", columns, cells)
        return
    t = table(f"ecosystem {ws.eco.name}", columns)
    for row in cells:
        t.add_row(*row)
    out.print(t)


# Rich lays a table out cell by cell (about 0.6 ms a row): past this many rows, an aligned plain-text table
PLAIN_ABOVE = 300


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell, one line per row, written straight to stdout (linear and fast)."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    sys.stdout.write("\n".join(lines) + "\n")


@app.command()
def versions(line: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """The versions of LINE, oldest first."""
    vs = line_versions(open_workspace(workspace), line)
    if json_out:
        emit(vs)
        return
    t = table(f"versions of {line}", ("version", "kind", "source", "parent version", "created", "channels"))
    for v in vs:
        t.add_row(v.id, v.kind, v.source, v.parent_version or "", v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                  ", ".join(v.channels))
    out.print(t)


@app.command()
def lineage(version: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Ancestors (what VERSION was built on) and descendants (what was built on it), across lines."""
    lin = loop.version_lineage(open_workspace(workspace), version)
    if json_out:
        emit(lin.model_dump(mode="json", exclude_none=True))
        return
    tree = Tree(f"[bold]{version}[/]")
    up = tree.add("ancestors")
    for a in lin.ancestors:
        up.add(f"{a.version} ({a.relation})")
    down = tree.add("descendants")
    for d in lin.descendants:
        down.add(f"{d.version} ({d.relation} of {d.of})")
    out.print(tree)


@app.command()
def channels(line: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Where LINE's channels point now, and the full history of every move."""
    rep = channel_report(open_workspace(workspace), line)
    if json_out:
        emit(rep)
        return
    out.print("  ".join(f"[bold]{c}[/]={v or '—'}" for c, v in rep.channels.items()))
    t = table(f"channel history of {line}", ("when", "channel", "from", "to", "kind", "actor", "reason"))
    for m in rep.history:
        t.add_row(m.created_at.strftime("%Y-%m-%d %H:%M:%S"), m.channel, m.from_version or "—", m.to_version,
                  m.kind, m.actor, m.reason)
    out.print(t)


@app.command()
def gc(keep_latest: Annotated[int, typer.Option(
        min=0, max=1_000_000, help="Also keep each line's N newest versions.")] = 1,
       dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted.")] = False,
       workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Delete artifacts no channel needs; never what a channel points at now or pointed at last."""
    res = collect_garbage(open_workspace(workspace), keep_latest=keep_latest, dry_run=dry_run)
    if json_out:
        emit(res)
        return
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb} {res.deleted_blobs} blobs ({res.freed_bytes / 1e6:.1f} MB) of "
              f"{len(res.versions)} versions; kept {len(res.kept_versions)} protected versions.")
