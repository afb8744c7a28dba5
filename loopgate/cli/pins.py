"""``loopgate pin`` / ``loopgate unpin``: keep a line on its parent version through upgrades, or let it follow
again (the rules and the records are in :mod:`loopgate.loop.pins`)."""

from __future__ import annotations

from typing import Annotated

import typer

from loopgate.cli.app import ActorOpt, JsonOpt, WorkspaceOpt, app, emit, open_workspace, out
from loopgate.loop.pins import pin, unpin


@app.command("pin")
def pin_command(line: Annotated[str, typer.Argument(help="The model line to keep on its parent version.")],
                reason: Annotated[str, typer.Option("--reason", help="Why (kept in the ledger, shown by status "
                                                    "and plan).")],
                actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Pin LINE: propagation leaves it (and the lines below it) on its parent version until it is unpinned.
    Pinning a pinned line keeps the first pin and exits 0."""
    res = pin(open_workspace(workspace), line, reason=reason, actor=actor)
    if json_out:
        emit(res)
        return
    out.print(res.message, soft_wrap=True, markup=False)


@app.command("unpin")
def unpin_command(line: Annotated[str, typer.Argument(help="The pinned line.")],
                  reason: Annotated[str, typer.Option("--reason", help="Why (kept in the ledger).")] = "",
                  actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Unpin LINE: the next release of its parent line re-derives it again (nothing runs now). Unpinning a line
    that is not pinned exits 0."""
    res = unpin(open_workspace(workspace), line, actor=actor, reason=reason)
    if json_out:
        emit(res)
        return
    out.print(res.message, soft_wrap=True, markup=False)
