"""The ``loopgate`` app: its options, JSON output, progress and error handling, in one place.

Every command takes ``--workspace DIR`` (default: ``LOOPGATE_WORKSPACE`` or the current folder) and
``--json`` (machine-readable output on stdout and nothing else there; progress goes to stderr).
Errors a user can cause print one paragraph and exit 2; a gate that blocks a release exits 3.
Commands parse their arguments, call the service layer (:mod:`loopgate.loop`) and print — nothing else.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic_core import to_json
from rich.console import Console
from rich.table import Table

from loopgate.errors import LoopgateError, printable
from loopgate.identity import normalise_identity
from loopgate.loop.workspace import Workspace, default_workspace

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Loopgate: train, evaluate, gate, release, propagate and roll back continually updated LMs.")
audit_app = typer.Typer(no_args_is_help=True, help="Check the tamper-evident ledger and the stored files.")
app.add_typer(audit_app, name="audit")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@app.callback()
def _machine(device: Annotated[str | None, typer.Option(
                 "--device", help="Where models run: auto (cuda → mps → cpu), cpu, cuda, cuda:N or mps "
                                  "(default: $LOOPGATE_DEVICE or auto).")] = None,
             dtype: Annotated[str | None, typer.Option(
                 "--dtype", help="Weights' dtype: auto (bf16 on a GPU that supports it, else float32), float32, "
                                 "bfloat16 or float16 (default: $LOOPGATE_DTYPE or auto).")] = None) -> None:
    """Options every command takes before its name (``loopgate --device cuda update ...``)."""
    # handed to every job through the environment (jobs may run in other processes). The form is checked here,
    # without torch (read-only commands never import it); whether this machine has the device is checked where
    # a model loads (models.io.resolve_device)
    if device is not None:
        if not _DEVICE.fullmatch(device.strip().lower()):
            raise typer.BadParameter(f"{device!r} is not a device; use auto, cpu, cuda, cuda:N or mps",
                                     param_hint="--device")
        os.environ["LOOPGATE_DEVICE"] = device
    if dtype is not None:
        if dtype.strip().lower() not in _DTYPES:
            raise typer.BadParameter(f"{dtype!r} is not a dtype; use auto, float32, bfloat16 or float16",
                                     param_hint="--dtype")
        os.environ["LOOPGATE_DTYPE"] = dtype


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")
# the names models.io.resolve_dtype accepts
_DTYPES = ("auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16")

WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace folder (default: "
                                                   "$LOOPGATE_WORKSPACE or the current folder).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
def _identity(value: str | None) -> str | None:
    """``--as`` in its canonical form (loopgate.identity): ``Alice`` and ``alice`` are one person."""
    if value is None:
        return None
    try:
        return normalise_identity(value, what="--as")
    except LoopgateError as e:
        raise typer.BadParameter(str(e)) from None


ActorOpt = Annotated[str | None, typer.Option("--as", help="Who runs this (default: $LOOPGATE_USER or the login); "
                                              "letters, digits and - _ . @ +, compared case-insensitively.",
                                              callback=_identity)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
def _junit_path(value: Path | None) -> Path | None:
    """--junit is checked before the command runs: a path that cannot be written must not fail after a release."""
    if value is None:
        return None
    parent = value.parent if str(value.parent) else Path(".")
    if value.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK) or (
            value.exists() and not os.access(value, os.W_OK)):
        raise typer.BadParameter(f"{str(value)[:200]!r} cannot be written (a folder that exists and is writable, "
                                 "and a file name in it)")
    return value


JunitOpt = Annotated[Path | None, typer.Option("--junit", help="Write the gate verdicts as JUnit XML (checked "
                                               "writable before anything runs).", callback=_junit_path)]


def open_workspace(workspace: Path | None) -> Workspace:
    return Workspace.open(workspace if workspace is not None else default_workspace())


def progress_enabled(quiet: bool) -> bool:
    """Progress on stderr unless the user asked for quiet: bars on a terminal, else a plain line every few
    seconds (``LOOPGATE_PROGRESS_EVERY``, :mod:`loopgate.train.progress`) — a redirected run of minutes must not
    look hung."""
    return not quiet


def table(title: str | None, columns: Sequence[str]) -> Table:
    """A rich table whose cells wrap (long words folded) to fit the terminal: rich's default cuts a cell that
    does not fit with an ellipsis, and a version id or a gate's reason must be read whole."""
    t = Table(title=title)
    for col in columns:
        t.add_column(col, overflow="fold")
    return t


def emit(data: Any) -> None:
    """Print JSON to stdout (and nothing else); pydantic outcomes serialise as they do everywhere else."""
    # pydantic-core's encoder serialises models (anywhere in the data) as ``model_dump(mode="json")`` does, in one
    # call: dumping 10,000 status rows one by one and indenting in pure Python took most of ``status --json``
    sys.stdout.write(to_json(data, indent=2, fallback=str).decode("utf-8") + "\n")


# Which module (``loopgate/cli/<module>.py``) defines each top-level command or command group. Importing every
# module would import what every command needs (torch for training), so the CLI imports only the one a command
# line names; a new command adds its line here (tests/test_cli_table.py checks the table against the app).
COMMANDS: dict[str, str] = {
    **dict.fromkeys(("channels", "gc", "init", "lineage", "register", "status", "versions"), "core"),
    **dict.fromkeys(("approve", "plan", "promote", "release", "resume", "rollback", "update"), "release"),
    **dict.fromkeys(("compare", "evaluate", "import-lmeval"), "evaluation"),
    **dict.fromkeys(("canary", "feedback", "key"), "gateway"),
    **dict.fromkeys(("demo", "report"), "report"),
    **dict.fromkeys(("pin", "unpin"), "pins"),
    "audit": "audit",
    "runs": "runs",
    "serve": "serve",
    "token": "tokens",
    "tune": "tune",
}


def load_commands(argv: list[str]) -> None:
    """Import the command modules a command line needs: the one that defines its command, or every one (help,
    an unknown command). ``loopgate status`` thus never imports the model libraries that ``update`` needs."""
    # an option before the command may take a value (``-w DIR status``): then the first bare word is that value,
    # and the command is the first word the table knows
    command = next((a for a in argv if a in COMMANDS), None)
    modules = {COMMANDS[command]} if command else set(COMMANDS.values())
    for module in sorted(modules):
        importlib.import_module(f"loopgate.cli.{module}")


def one_paragraph(message: str) -> str:
    """An error message as one printable paragraph: whitespace runs (blank lines a user's input carried
    included) become one space, other control characters and lone surrogates are shown escaped."""
    return printable(" ".join(message.split()))


def run(argv: list[str] | None = None) -> None:
    """Run the app: LoopgateError → one paragraph on stderr and its exit code (2, or 3 for a gate)."""
    load_commands(list(sys.argv[1:] if argv is None else argv))
    try:
        # without standalone mode, click returns a command's typer.Exit code instead of exiting with it
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except LoopgateError as e:
        err.print("[red]error:[/] ", end="")
        err.print(one_paragraph(str(e)), soft_wrap=True, markup=False, highlight=False)
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
