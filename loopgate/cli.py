"""The ``loopgate`` command (Typer + Rich).

Every command takes ``--workspace DIR`` (default: ``LOOPGATE_WORKSPACE`` or the current folder) and
``--json`` (machine-readable output on stdout and nothing else there; progress goes to stderr).
Errors a user can cause print one paragraph and exit 2; a gate that blocks a release exits 3.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from loopgate.errors import LoopgateError
from loopgate.loop.workspace import Workspace, default_workspace
from loopgate.store import ArtifactReport

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Loopgate: train, evaluate, gate, release, propagate and roll back continually updated LMs.")
audit_app = typer.Typer(no_args_is_help=True, help="Check the tamper-evident ledger and the stored files.")
app.add_typer(audit_app, name="audit")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace folder (default: "
                                                   "$LOOPGATE_WORKSPACE or the current folder).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def _ws(workspace: Path | None) -> Workspace:
    return Workspace.open(workspace if workspace is not None else default_workspace())


def emit(data: Any) -> None:
    """Print JSON to stdout (and nothing else)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------------------------- core


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
    from loopgate.loop.versions import register_model

    ws = _ws(workspace)
    v = register_model(ws, line, model, base=base, note=note, actor=actor)
    if json_out:
        emit(v.model_dump(mode="json"))
        return
    out.print(f"Registered [bold]{v.id}[/] ({v.kind}, {len(v.files)} files). "
              f"Release it with 'loopgate release {v.id}'.")


@app.command()
def status(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Every line: tier, parent, channels, latest version, and whether it is pinned to an old parent."""
    from loopgate.loop.versions import ecosystem_status

    ws = _ws(workspace)
    rows = ecosystem_status(ws)
    if json_out:
        emit({"ecosystem": ws.eco.name, "lines": rows})
        return
    t = Table(title=f"ecosystem {ws.eco.name}")
    for col in ("line", "tier", "parent", "production", "canary", "latest", "note"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["line"], r["tier"], r["parent"] or "", r["channels"]["production"] or "—",
                  r["channels"]["canary"] or "", r["latest"] or "—", r["note"])
    out.print(t)


@app.command()
def versions(line: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """The versions of LINE, oldest first."""
    ws = _ws(workspace)
    ws.eco.line(line)
    vs = ws.store.versions(line)
    chans = ws.store.channels(line)
    if json_out:
        emit([{**v.model_dump(mode="json"), "channels": [c for c, x in chans.items() if x == v.id]} for v in vs])
        return
    t = Table(title=f"versions of {line}")
    for col in ("version", "kind", "source", "parent version", "created", "channels"):
        t.add_column(col)
    for v in vs:
        t.add_row(v.id, v.kind, v.source, v.parent_version or "", v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                  ", ".join(c for c, x in chans.items() if x == v.id))
    out.print(t)


@app.command()
def lineage(version: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Ancestors (what VERSION was built on) and descendants (what was built on it), across lines."""
    from loopgate.loop.versions import version_lineage

    ws = _ws(workspace)
    lin = version_lineage(ws, version)
    if json_out:
        emit(lin)
        return
    tree = Tree(f"[bold]{version}[/]")
    up = tree.add("ancestors")
    for a in lin["ancestors"]:
        up.add(f"{a['version']} ({a['relation']})")
    down = tree.add("descendants")
    for d in lin["descendants"]:
        down.add(f"{d['version']} ({d['relation']} of {d['of']})")
    out.print(tree)


@app.command()
def channels(line: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Where LINE's channels point now, and the full history of every move."""
    ws = _ws(workspace)
    ws.eco.line(line)
    now = ws.store.channels(line)
    hist = ws.store.channel_history(line)
    if json_out:
        emit({"line": line, "channels": now, "rollback_target": ws.store.rollback_target(line),
              "history": [m.model_dump(mode="json") for m in hist]})
        return
    out.print("  ".join(f"[bold]{c}[/]={v or '—'}" for c, v in now.items()))
    t = Table(title=f"channel history of {line}")
    for col in ("when", "channel", "from", "to", "kind", "actor", "reason"):
        t.add_column(col)
    for m in hist:
        t.add_row(m.created_at.strftime("%Y-%m-%d %H:%M:%S"), m.channel, m.from_version or "—", m.to_version,
                  m.kind, m.actor, m.reason)
    out.print(t)


@audit_app.command("verify")
def audit_verify(artifacts: Annotated[bool, typer.Option("--artifacts", help="Also re-hash every stored file, "
                                                         "checkout and merged copy, naming each version hit.")] = False,
                 workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Walk the hash chain (and with --artifacts re-hash the stored files); exit 0 when all is intact, 1 naming
    the first bad ledger entry and every version whose files are missing, corrupted or differ otherwise."""
    ws = _ws(workspace)
    rep = ws.store.verify_ledger()
    files = ws.store.verify_artifacts() if artifacts else None
    ok = rep.ok and (files is None or files.ok)
    if json_out:
        data: dict[str, Any] = rep.model_dump()
        if files is not None:
            data.update(ok=ok, ledger_ok=rep.ok, artifacts={**files.model_dump(), "versions_hit": files.versions_hit})
        emit(data)
    else:
        if rep.ok:
            out.print(f"ledger intact: {rep.entries} entries, head {rep.head_hash[:12]}")
        else:
            err.print(f"[red]ledger tampered[/]: {rep.problem} (first bad entry: {rep.first_bad_seq})", soft_wrap=True)
        if files is not None:
            _print_artifact_report(files)
    if not ok:
        raise typer.Exit(1)


def _print_artifact_report(files: ArtifactReport) -> None:
    gone = f"; {files.collected} collected by gc" if files.collected else ""
    summary = (f"{files.blobs} blobs ({files.bytes / 1e6:.1f} MB) of {files.versions} versions and "
               f"{files.copies} loadable copies re-hashed{gone}")
    if files.ok:
        out.print(f"artifacts intact: {summary}")
        return
    err.print(f"[red]artifacts damaged[/]: {len(files.versions_hit)} versions hit "
              f"({', '.join(files.versions_hit)}); {summary}", soft_wrap=True)
    for h in files.hits:
        err.print(f"  {h.version} {h.what} {h.file}: {h.problem}", soft_wrap=True, markup=False)
    err.print("Restore damaged blobs from a backup (or re-register those versions); checkouts and merged copies "
              "are rebuilt from the blobs on their next use.", soft_wrap=True)


@audit_app.command("log")
def audit_log(limit: Annotated[int, typer.Option(help="Show the last N entries.")] = 50,
              workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """The last entries of the ledger."""
    ws = _ws(workspace)
    entries = ws.store.ledger()[-limit:]
    if json_out:
        emit([e.model_dump() for e in entries])
        return
    t = Table(title="ledger")
    for col in ("seq", "time", "actor", "kind", "subject", "hash"):
        t.add_column(col)
    for e in entries:
        t.add_row(str(e.seq), e.ts[:19], e.actor, e.kind, e.subject, e.hash[:12])
    out.print(t)


@app.command()
def gc(keep_latest: Annotated[int, typer.Option(help="Also keep each line's N newest versions.")] = 1,
       dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted.")] = False,
       workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Delete artifacts no channel needs; never what a channel points at now or pointed at last."""
    ws = _ws(workspace)
    res = ws.store.gc(keep_latest=keep_latest, dry_run=dry_run)
    if json_out:
        emit(res)
        return
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb} {res['deleted_blobs']} blobs ({res['freed_bytes'] / 1e6:.1f} MB) of "
              f"{len(res['versions'])} versions; kept {len(res['kept_versions'])} protected versions.")


# ---------------------------------------------------------------------------------------------- entry


def _register_release_commands() -> None:
    # the release-loop commands live in their own module; importing it registers them on `app`
    import loopgate.cli_release  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Console entry point: LoopgateError → one paragraph on stderr and its exit code (2, or 3 for a gate)."""
    _register_release_commands()
    try:
        # without standalone mode, click returns a command's typer.Exit code instead of exiting with it
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except LoopgateError as e:
        err.print(f"[red]error:[/] {e}", soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as e:  # usage errors carry their own exit code (2)
        # typer ≥ 0.20 vendors click (typer._click), so click.ClickException no longer matches: duck-type it
        show, code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise


if __name__ == "__main__":
    # run through the imported module so the release commands register on the same `app`
    from loopgate.cli import main as _main

    _main()
