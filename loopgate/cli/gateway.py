"""The production end on the command line: ``loopgate canary status LINE``, ``loopgate feedback export LINE``,
``loopgate key create|list|revoke``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopgate.cli.app import ActorOpt, JsonOpt, WorkspaceOpt, app, emit, err, open_workspace, out, table
from loopgate.loop import canary as canary_loop
from loopgate.loop import feedback as feedback_loop
from loopgate.loop.workspace import current_user

canary_app = typer.Typer(no_args_is_help=True, help="The live canary of a line and its analysis.")
feedback_app = typer.Typer(no_args_is_help=True, help="User feedback on served answers, into the next update.")
key_app = typer.Typer(no_args_is_help=True, help="API keys of the gateway, one or more per app.")
app.add_typer(canary_app, name="canary")
app.add_typer(feedback_app, name="feedback")
app.add_typer(key_app, name="key")


@canary_app.command("status")
def canary_status(line: str, analyse: Annotated[bool, typer.Option(
                      "--analyse", help="Record this look as a measurement and act on it (promote / roll back), "
                      "as the gateway does.")] = False,
                  actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """LINE's live canary against production: every metric's interval and the verdict so far."""
    ws = open_workspace(workspace)
    st = canary_loop.analyse(ws, line, actor=actor) if analyse else canary_loop.status(ws, line)
    if json_out:
        emit(st)
        return
    s = st.state
    out.print(f"{st.line}: production {s.production or '—'}, canary {s.canary or '—'}"
              + (f" (weight {s.weight:g}{', shadow' if s.shadow else ''}, live since {s.since:%Y-%m-%d %H:%M:%S})"
                 if s.active and s.since else ""))
    if st.analysis is not None:
        a = st.analysis
        t = table(None, ("metric", "canary", "production", "difference (always-valid CI)", "tolerance", "verdict"))
        for m in a.metrics:
            t.add_row(m.name, f"{m.canary_rate:.3f} (n={m.canary_n})", f"{m.production_rate:.3f} (n={m.production_n})",
                      f"{m.difference:+.3f} [{m.ci_low:+.3f}, {m.ci_high:+.3f}]", f"{m.tolerance:g}", m.verdict.value)
        out.print(t)
        out.print(f"verdict: {a.verdict.value} — {a.summary}")
    for c in st.checks[-5:]:
        if c.outcome != "watching":
            out.print(f"check {c.id}: {c.canary_version} {c.outcome} ({c.verdict}) at {c.created_at:%Y-%m-%d %H:%M:%S}")
    if st.note:
        err.print(st.note)


@feedback_app.command("export")
def feedback_export(line: str,
                    fmt: Annotated[str, typer.Option("--format", help="sft (well-rated answers), dpo (a preferred "
                                                     "and a rejected answer per prompt) or suite (badly rated "
                                                     "cases, a regression suite).")] = "sft",
                    output: Annotated[Path | None, typer.Option("--out", "-o", help="JSONL file to write "
                                                                "(default: only count the rows).")] = None,
                    workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Turn LINE's rated answers into update data (sft, dpo) or a regression suite (suite)."""
    res = feedback_loop.export(open_workspace(workspace), line, fmt, output)
    if json_out:
        emit(res)
        return
    where = f" → {res.path}" if res.path else " (pass --out FILE to write them)"
    out.print(f"{res.rows} {res.format} rows from {res.rated} rated answers of {res.line}{where}")
    for why, n in res.skipped.items():
        out.print(f"  skipped {n}: {why}")
    if res.path and res.format == "suite":
        out.print(f"declare it under 'suites:' in loopgate.yaml (kind: generation) and list it in "
                  f"lines.{res.line}.suites: every later version of {res.line} is gated on it")


@key_app.command("create")
def key_create(app_name: Annotated[str, typer.Argument(metavar="APP", help="The app (or model line) the key "
                                                       "serves.")],
               actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Make an API key for APP and print it once (only its sha256 is stored)."""
    key, info = feedback_loop.create_key(open_workspace(workspace), app_name, actor=actor or current_user())
    if json_out:
        emit({"key": key, **info.model_dump(mode="json")})
        return
    out.print(key)
    err.print(f"key {info.id} for '{app_name}' ({info.prefix}…): shown once, keep it now")


@key_app.command("list")
def key_list(all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
             workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """The API keys (never the keys themselves: only their first characters are kept)."""
    found = feedback_loop.keys(open_workspace(workspace), include_revoked=all_)
    if json_out:
        emit(found)
        return
    t = table("API keys", ("id", "app", "prefix", "created by", "created", "revoked"))
    for k in found:
        t.add_row(str(k.id), k.app, k.prefix + "…", k.created_by, k.created_at.isoformat(timespec="seconds"),
                  k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "")
    out.print(t)


@key_app.command("revoke")
def key_revoke(key_id: Annotated[int, typer.Argument(
        min=1, max=2**31 - 1, help="The key's id (from 'loopgate key list').")],
               actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Revoke an API key: a running gateway refuses it within 5 seconds."""
    k = feedback_loop.revoke_key(open_workspace(workspace), key_id, actor=actor or current_user())
    if json_out:
        emit(k)
        return
    out.print(f"revoked API key {k.id} ({k.prefix}… of '{k.app}')")
