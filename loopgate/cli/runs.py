"""``loopgate runs``: the update runs in the registry — list them, abandon one that is stuck."""

from __future__ import annotations

from typing import Annotated, cast

import typer

from loopgate.cli.app import ActorOpt, JsonOpt, WorkspaceOpt, app, emit, open_workspace, out, table
from loopgate.errors import LoopgateError
from loopgate.loop.runs import RUN_STATUSES, RunStatus, abandon_run, list_runs

runs_app = typer.Typer(no_args_is_help=True, help="Update runs: started, failed, done or abandoned.")
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def runs_list(status: Annotated[str | None, typer.Option("--status", help=f"Only runs in this state: "
                                                         f"{' | '.join(RUN_STATUSES)}.")] = None,
              workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Every update run and its state: started (interrupted, or running now), failed (with its error), done,
    abandoned."""
    if status is not None and status not in RUN_STATUSES:
        raise LoopgateError(f"--status {status!r} is not a run state: use one of {', '.join(RUN_STATUSES)}")
    runs = list_runs(open_workspace(workspace), cast(RunStatus | None, status))
    if json_out:
        emit(runs)
        return
    if not runs:
        out.print(f"no {status} update runs" if status else "no update runs")
        return
    t = table("update runs", ("run", "status", "line", "data", "at", "outcome"))
    for r in runs:
        outcome = {"done": f"{r.version}{' (released)' if r.released else ''}",
                   "failed": r.error or "", "abandoned": f"{r.reason} ({r.abandoned_by})",
                   "started": "interrupted, or running now: 'loopgate resume' finishes it"}[r.status]
        t.add_row(r.run, r.status, r.line or "", ", ".join(r.data), r.at or "", outcome)
    out.print(t)


@runs_app.command("abandon")
def runs_abandon(run: Annotated[str, typer.Argument(help="The run's id, from 'loopgate runs list' (a unique "
                                                   "prefix will do).")],
                 reason: Annotated[str, typer.Option("--reason", help="Why (kept in the ledger).")],
                 actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Give up on a started or failed run: recorded in the ledger; resume skips it from now on."""
    r = abandon_run(open_workspace(workspace), run, reason, actor=actor)
    if json_out:
        emit(r)
        return
    out.print(f"abandoned run {r.run} (update of {r.line}): resume skips it from now on")
