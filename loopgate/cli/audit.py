"""``loopgate audit``: verify the ledger (and the stored files), sign it with the team key, show its last entries."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from loopgate.cli.app import ActorOpt, JsonOpt, WorkspaceOpt, audit_app, emit, err, open_workspace, out, table
from loopgate.errors import LoopgateError
from loopgate.loop.audit import ledger_tail, sign_ledger, verify


@audit_app.command("verify")
def audit_verify(artifacts: Annotated[bool, typer.Option("--artifacts", help="Also re-hash every stored file, "
                                                         "checkout and merged copy, naming each version hit.")] = False,
                 expect_head: Annotated[str | None, typer.Option(
                     "--expect-head", metavar="HASH", help="A head hash recorded earlier outside the database (the "
                     "head_hash of a past `audit verify --json`): the chain must still hold it.")] = None,
                 workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Walk the hash chain, check the head recorded in the database and, with LOOPGATE_LEDGER_KEY set, every
    entry's signature (and with --artifacts re-hash the stored files); exit 0 when all is intact, 1 naming
    the first bad ledger entry and every version whose files are missing, corrupted or differ otherwise."""
    if expect_head is not None and not re.fullmatch(r"[0-9a-f]{64}", expect_head):
        raise LoopgateError(f"--expect-head {expect_head!r} is not a head hash (64 hex digits, the head_hash of "
                            "`loopgate audit verify --json`)")
    rep = verify(open_workspace(workspace), artifacts=artifacts, expect_head=expect_head)
    files = rep.artifacts
    if json_out:
        data: dict[str, Any] = rep.ledger.model_dump()
        data.update(ok=rep.ok, ledger_ok=rep.ledger.ok, state_problems=rep.state_problems)
        if files is not None:
            data.update(artifacts={**files.model_dump(), "versions_hit": files.versions_hit})
        emit(data)
    else:
        if rep.ledger.ok:
            signed = ", every entry signed with LOOPGATE_LEDGER_KEY" if rep.ledger.signed else ""
            out.print(f"ledger intact: {rep.ledger.entries} entries{signed}, head {rep.ledger.head_hash[:12]}")
        else:
            err.print(f"[red]ledger tampered[/]: {rep.ledger.problem} (first bad entry: {rep.ledger.first_bad_seq})",
                      soft_wrap=True)
        if rep.state_problems:
            err.print(f"[red]registry tables disagree with the ledger[/] ({len(rep.state_problems)}):", soft_wrap=True)
            for p in rep.state_problems:
                err.print(f"  {p}", soft_wrap=True, markup=False)
        else:
            out.print("tables agree with the ledger: channels, moves, decisions, approvals, tokens")
        if files is not None:
            gone = f"; {files.collected} collected by gc" if files.collected else ""
            summary = (f"{files.blobs} blobs ({files.bytes / 1e6:.1f} MB) of {files.versions} versions and "
                       f"{files.copies} loadable copies re-hashed{gone}")
            if files.ok:
                out.print(f"artifacts intact: {summary}")
            else:
                err.print(f"[red]artifacts damaged[/]: {len(files.versions_hit)} versions hit "
                          f"({', '.join(files.versions_hit)}); {summary}", soft_wrap=True)
                for h in files.hits:
                    err.print(f"  {h.version} {h.what} {h.file}: {h.problem}", soft_wrap=True, markup=False)
                err.print("Restore damaged blobs from a backup (or re-register those versions); checkouts and "
                          "merged copies are rebuilt from the blobs on their next use.", soft_wrap=True)
    if not rep.ok:
        raise typer.Exit(1)


@audit_app.command("sign")
def audit_sign(actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Sign, with LOOPGATE_LEDGER_KEY, every entry written before the key was set (or by a client without it),
    once the chain verifies; a `ledger.sign` entry records who vouched for them. Exit 2 when the chain does not
    verify or an entry carries another key's signature."""
    rep = sign_ledger(open_workspace(workspace), actor=actor)
    if json_out:
        emit(rep)
        return
    out.print(f"signed {rep.signed} of {rep.entries} entries with LOOPGATE_LEDGER_KEY; `loopgate audit verify` "
              "now checks every signature", soft_wrap=True)


@audit_app.command("log")
def audit_log(limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="Show the last N entries.")] = 50,
              workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """The last entries of the ledger."""
    entries = ledger_tail(open_workspace(workspace), limit)
    if json_out:
        emit([e.model_dump() for e in entries])
        return
    t = table("ledger", ("seq", "time", "actor", "kind", "subject", "hash"))
    for e in entries:
        t.add_row(str(e.seq), e.ts[:19], e.actor, e.kind, e.subject, e.hash[:12])
    out.print(t)
