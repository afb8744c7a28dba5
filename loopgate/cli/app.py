"""The ``loopgate`` app: its options, JSON output, progress and error handling, in one place.

Every command takes ``--workspace DIR`` (default: ``LOOPGATE_WORKSPACE`` or the current folder) and
``--json`` (machine-readable output on stdout and nothing else there; progress goes to stderr).
Errors a user can cause print one paragraph and exit 2; a gate that blocks a release exits 3.
Commands parse their arguments, call the service layer (:mod:`loopgate.loop`) and print — nothing else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

from loopgate.errors import LoopgateError
from loopgate.loop.workspace import Workspace, default_workspace

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Loopgate: train, evaluate, gate, release, propagate and roll back continually updated LMs.")
audit_app = typer.Typer(no_args_is_help=True, help="Check the tamper-evident ledger and the stored files.")
app.add_typer(audit_app, name="audit")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace folder (default: "
                                                   "$LOOPGATE_WORKSPACE or the current folder).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ActorOpt = Annotated[str | None, typer.Option("--as", help="Who runs this (default: $LOOPGATE_USER or the login).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
JunitOpt = Annotated[Path | None, typer.Option("--junit", help="Write the gate verdicts as JUnit XML.")]


def open_workspace(workspace: Path | None) -> Workspace:
    return Workspace.open(workspace if workspace is not None else default_workspace())


def progress_enabled(quiet: bool) -> bool:
    """Progress bars on stderr when it is a terminal and the user did not ask for quiet."""
    return not quiet and err.is_terminal


def emit(data: Any) -> None:
    """Print JSON to stdout (and nothing else); pydantic outcomes serialise as they do everywhere else."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def run(argv: list[str] | None = None) -> None:
    """Run the app: LoopgateError → one paragraph on stderr and its exit code (2, or 3 for a gate)."""
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
