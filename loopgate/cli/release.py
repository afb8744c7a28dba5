"""Release-loop commands: update, release, approve, promote, rollback, plan, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from xml.etree import ElementTree as ET

import typer
from rich.table import Table

from loopgate import loop
from loopgate.cli.app import (
    ActorOpt,
    JsonOpt,
    JunitOpt,
    QuietOpt,
    WorkspaceOpt,
    app,
    emit,
    open_workspace,
    out,
    progress_enabled,
    table,
)
from loopgate.errors import GateBlocked
from loopgate.loop.outcomes import PropagationOutcome, ReleaseOutcome
from loopgate.records import Decision


def _print_wave(props: list[PropagationOutcome]) -> None:
    for p in props:
        status = "pinned" if p.pinned else ("released" if p.released else "—")
        out.print(f"  ↳ {p.line}: {p.strategy or '-'} → {p.version or '-'} ({status}) {p.note}")


def _print_release(o: ReleaseOutcome) -> None:
    d = o.decision
    if o.note:
        again = " (--again trains on it once more)" if o.note.startswith("already released") else ""
        out.print(f"[bold]{o.version}[/]: {o.note}{again}")
        return
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[d.verdict.value]
    held = d.verdict.value == "pass" and not o.released
    channels = sorted({m.channel for m in o.channel_moves})
    where = (f"released to canary only — production follows the canary analysis, or 'loopgate promote {o.version}'"
             if channels == ["canary"] else "released to production")
    state = where if o.released else (
        f"not released: auto_release is off — promote it with 'loopgate promote {o.version}'" if held
        else "not released")
    out.print(f"[bold]{o.version}[/]: decision [{colour}]{d.verdict.value}[/] ({state})")
    out.print(gate_table(d))
    approvers = approvals_line(d)
    if approvers:
        out.print(approvers)
    _print_wave(o.propagation)


def gate_table(d: Decision) -> Table:
    """The decision's gates, with who overrode each one (an override is the approver's name and reason)."""
    t = table(None, ("gate", "verdict", "blocking", "summary", "overridden by"))
    for g in d.gates:
        t.add_row(g.name, g.verdict.value, "yes" if g.blocking else "no", g.summary, "; ".join(g.overridden_by))
    return t


def approvals_line(d: Decision) -> str:
    """"approved by …" from the approval gate's evidence (empty when nobody approved)."""
    gate = next((g for g in d.gates if g.name == "approval"), None)
    ev = gate.evidence if gate else {}
    names = [str(a) for a in ev.get("approvers") or []]
    if not names:
        return ""
    need = ev.get("required")
    return f"approved by {', '.join(names)}" + (f" ({len(names)}/{need} required)" if need else "")


def _write_junit(path: Path, o: ReleaseOutcome) -> None:
    """Gate verdicts as JUnit XML: a failed gate is a <failure>, an inconclusive one is <skipped>."""
    d = o.decision
    suite = ET.Element("testsuite", name=f"loopgate.{o.version}", tests=str(len(d.gates)),
                       failures=str(sum(g.verdict.value == "fail" and g.blocking for g in d.gates)),
                       skipped=str(sum(g.verdict.value == "inconclusive" for g in d.gates)))
    for g in d.gates:
        case = ET.SubElement(suite, "testcase", classname=f"gates.{o.version}", name=g.name)
        if g.verdict.value == "fail" and g.blocking:
            ET.SubElement(case, "failure", message=g.summary).text = str(g.evidence)
        elif g.verdict.value == "inconclusive":
            ET.SubElement(case, "skipped", message=g.summary)
        else:
            ET.SubElement(case, "system-out").text = g.summary
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _finish(o: ReleaseOutcome, json_out: bool, junit: Path | None) -> None:
    if junit is not None:
        _write_junit(junit, o)
    if json_out:
        emit(o)
    else:
        _print_release(o)
    if o.decision.verdict.value != "pass":
        raise typer.Exit(GateBlocked.exit_code)  # a passing decision held back by auto_release: false is not blocked


@app.command()
def update(line: str,
           data: Annotated[list[Path], typer.Option("--data", help="Update data JSONL (repeatable).")],
           recipe: Annotated[str | None, typer.Option(help="A named recipe from loopgate.yaml.")] = None,
           seed: Annotated[int | None, typer.Option(help="Override the recipe's seed.")] = None,
           no_propagate: Annotated[bool, typer.Option("--no-propagate", help="Do not re-derive children.")] = False,
           again: Annotated[bool, typer.Option("--again", help="Train even if the line's production history "
                                               "already holds this data.")] = False,
           junit: JunitOpt = None, actor: ActorOpt = None, workspace: WorkspaceOpt = None,
           json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Train a candidate of LINE, gate it, release it if allowed, propagate downstream (exit 3 if blocked).

    Data already in the line's production history is not trained twice: the command names the version that
    holds it and exits 0 (a CI retry), unless --again."""
    o = loop.update(open_workspace(workspace), line, data, recipe_name=recipe, seed=seed, actor=actor,
                    progress=progress_enabled(quiet), propagate=not no_propagate, again=again)
    _finish(o, json_out, junit)


@app.command()
def release(version: str, junit: JunitOpt = None, actor: ActorOpt = None, workspace: WorkspaceOpt = None,
            json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Gate a registered VERSION and release it if the gates allow; then propagate downstream."""
    o = loop.release(open_workspace(workspace), version, actor=actor, progress=progress_enabled(quiet))
    _finish(o, json_out, junit)


@app.command()
def plan(version: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """The downstream wave of VERSION, in tier order, with the transfer strategies to try (runs nothing)."""
    wave = loop.plan(open_workspace(workspace), version)
    if json_out:
        emit({"version": version, "wave": wave})  # models serialised in one call (10,000-line waves)
        return
    t = table(f"propagation plan for {version}", ("line", "tier", "current", "action", "strategies (cheapest first)"))
    for w in wave:
        t.add_row(w.line, w.tier, w.current or "", w.action, " → ".join(w.strategies))
    out.print(t)


@app.command()
def promote(version: str, channel: Annotated[str, typer.Option("--channel", help="staging | canary | "
                                                                 "production")] = "production",
            actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Move a channel to VERSION (it needs a passing decision)."""
    res = loop.promote(open_workspace(workspace), version, channel, actor=actor, progress=progress_enabled(False))
    if json_out:
        emit(res)
        return
    out.print(f"{channel} of {res.moves[0].line} → {version}")
    _print_wave(res.propagation)


@app.command()
def approve(version: str, actor: Annotated[str, typer.Option("--as", help="The approver.")],
            reason: Annotated[str, typer.Option("--reason", help="Why (kept in the ledger).")],
            override: Annotated[list[str] | None, typer.Option("--override", help="Gate whose inconclusive (or "
                                                               "overridable fail) verdict you accept.")] = None,
            junit: JunitOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False,
            quiet: QuietOpt = False) -> None:
    """Approve VERSION (two-person rule: never the requester), then re-decide and release if it passes."""
    o = loop.approve(open_workspace(workspace), version, actor, reason, override, progress=progress_enabled(quiet))
    _finish(o, json_out, junit)


@app.command()
def rollback(line: str, to: Annotated[str | None, typer.Option("--to", help="Version to restore (default: "
                                                                "the previous production version).")] = None,
             reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")] = "",
             force: Annotated[bool, typer.Option("--force", help="Roll back to a version production never held "
                                                 "(admin only, needs --reason; the ledger records it).")] = False,
             actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Move LINE's production back in one transaction; lines re-derived on it roll back with it. The target must
    be a version production held before (released or promoted), unless --force."""
    res = loop.rollback(open_workspace(workspace), line, to=to, reason=reason, actor=actor, force=force)
    if json_out:
        emit(res)
        return
    out.print(f"rolled back {line}: {res.from_version} → {res.to_version}")
    for c in res.cascade:
        out.print(f"  ↳ cascaded: {c.line}: {c.from_version} → {c.to_version}")
    for a in res.apps_following:
        out.print(f"  ↳ app {a} now serves its model line's restored version")


@app.command()
def resume(workspace: WorkspaceOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Finish every update run that was started but did not finish (e.g. killed); report runs that failed on a
    user error (they are not re-run: fix the input and run the update again)."""
    res = loop.resume(open_workspace(workspace), progress=progress_enabled(quiet))
    failed_now = [f for f in res.failed if f.resumed]
    if json_out:
        emit(res)
    else:
        for f in res.failed:
            what = "[red]failed[/] while resuming" if f.resumed else "[yellow]skipped[/] a failed"
            out.print(f"{what} update of {f.line} ({', '.join(f.data)}), run {f.run[:12]}: {f.error} "
                      f"('loopgate runs abandon {f.run[:12]} --reason …' if it cannot finish)", soft_wrap=True)
        if not res.finished and not failed_now:
            out.print("nothing to resume")
        for o in res.finished:
            _print_release(o)
    if failed_now:  # the others were resumed; a script still learns that one did not finish
        raise typer.Exit(2)
