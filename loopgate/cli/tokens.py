"""``loopgate token``: bearer tokens with roles for the REST API and the dashboard."""

from __future__ import annotations

from typing import Annotated

import typer

from loopgate.cli.app import ActorOpt, JsonOpt, WorkspaceOpt, app, emit, err, open_workspace, out, table
from loopgate.loop.workspace import current_user
from loopgate.store.tokens import ROLES, create_token, list_tokens, revoke_token

token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens of the REST API and dashboard (one role each).")
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(role: Annotated[str, typer.Option("--role", help=f"One of {', '.join(ROLES)}.")],
                 name: Annotated[str, typer.Option("--as", help="Who the token acts as (recorded as the actor; "
                                                   "the two-person rule compares it).")],
                 actor: Annotated[str | None, typer.Option("--by", help="Who creates it (default: "
                                                           "$LOOPGATE_USER or the login).")] = None,
                 workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Create a token; it is printed once and only its hash is kept."""
    t = create_token(open_workspace(workspace).store, role=role, name=name, actor=actor or current_user())
    if json_out:
        emit(t)
        return
    err.print(f"token {t.id}: {t.role} acting as {t.name} (shown once; only its hash is stored)")
    out.print(t.token)


@token_app.command("list")
def token_list(all_: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
               workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """The tokens (never their secrets)."""
    tokens = list_tokens(open_workspace(workspace).store, include_revoked=all_)
    if json_out:
        emit(tokens)
        return
    t = table("tokens", ("id", "name", "role", "prefix", "created by", "created", "revoked"))
    for x in tokens:
        t.add_row(str(x.id), x.name, x.role, x.prefix + "…", x.created_by, x.created_at.isoformat(timespec="seconds"),
                  x.revoked_at.isoformat(timespec="seconds") if x.revoked_at else "")
    out.print(t)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(
        min=1, max=2**31 - 1, help="The token's id (from 'loopgate token list').")],
                 actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Revoke a token: it authenticates nothing from now on."""
    t = revoke_token(open_workspace(workspace).store, token_id, actor=actor or current_user())
    if json_out:
        emit(t)
        return
    out.print(f"revoked token {t.id} ({t.role} acting as {t.name})")
