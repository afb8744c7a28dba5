"""Release-loop commands of the ``loopgate`` CLI: evaluate, compare, update, release, plan, promote,
approve, rollback, resume, report, demo. Registered on the app defined in :mod:`loopgate.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from xml.etree import ElementTree as ET

import typer
from rich.table import Table

from loopgate.cli import JsonOpt, WorkspaceOpt, _ws, app, emit, err, out
from loopgate.errors import GateBlocked, LoopgateError

ActorOpt = Annotated[str | None, typer.Option("--as", help="Who runs this (default: $LOOPGATE_USER or the login).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _progress(json_out: bool, quiet: bool) -> bool:
    return not quiet and err.is_terminal


# ---------------------------------------------------------------------------------------------- evaluate


@app.command()
def evaluate(version: str, suite: Annotated[list[str] | None, typer.Option("--suite", help="Only this suite "
                                                                             "(repeatable).")] = None,
             workspace: WorkspaceOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Evaluate VERSION on its line's suites (owned + inherited), cached by content."""
    from loopgate.loop.evaluation import evaluate_version, line_suites

    ws = _ws(workspace)
    v = ws.store.version(version)
    owned, inherited = line_suites(ws, v.line)
    names = suite or owned + inherited
    for n in names:
        if n not in ws.eco.suites:
            raise LoopgateError(f"unknown suite '{n}'; suites of {v.line}: {', '.join(owned + inherited)}")
    evs = evaluate_version(ws, version, names, progress=_progress(json_out, quiet))
    if json_out:
        emit([e.model_dump(mode="json", exclude={"examples"}) | {"examples": len(e.examples)} for e in evs.values()])
        return
    t = Table(title=f"evaluation of {version}")
    for col in ("suite", "kind", "n", "score", "95% CI", "p95 latency ms"):
        t.add_column(col)
    for name, e in evs.items():
        ci = f"[{e.ci_low:.2f}, {e.ci_high:.2f}]" if e.ci_low is not None and e.ci_high is not None else ""
        lat = e.metrics.get("latency_p95_ms")
        t.add_row(name, e.kind, str(e.n), f"{e.score:.3f}", ci, f"{lat:.1f}" if lat is not None else "")
    out.print(t)


@app.command()
def compare(version_a: str, version_b: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False,
            quiet: QuietOpt = False) -> None:
    """Per-suite deltas of B vs A with paired CIs, flips and exact McNemar p-values."""
    from loopgate.evaluate.metrics import paired_comparison
    from loopgate.loop.evaluation import evaluate_version, line_suites

    ws = _ws(workspace)
    a, b = ws.store.version(version_a), ws.store.version(version_b)
    sa, sb = line_suites(ws, a.line), line_suites(ws, b.line)
    common = [s for s in sa[0] + sa[1] if s in sb[0] + sb[1]]
    if not common:
        raise LoopgateError(f"{version_a} and {version_b} share no suite to compare on")
    ea = evaluate_version(ws, version_a, common, progress=_progress(json_out, quiet))
    eb = evaluate_version(ws, version_b, common, progress=_progress(json_out, quiet))
    rows = []
    for s in common:
        pc = paired_comparison(ea[s], eb[s])
        rows.append({"suite": s, **pc.model_dump(mode="json")})
    if json_out:
        emit({"a": version_a, "b": version_b, "suites": rows})
        return
    t = Table(title=f"{version_b} vs {version_a}")
    for col in ("suite", "n", "A", "B", "Δ", "95% CI", "−flips", "+flips", "McNemar p"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["suite"], str(r["n"]), f"{r['before_score']:.3f}", f"{r['after_score']:.3f}",
                  f"{r['delta']:+.3f}", f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", str(r["negative_flips"]),
                  str(r["positive_flips"]), f"{r['mcnemar_p']:.3g}")
    out.print(t)


@app.command("import-lmeval")
def import_lmeval_cmd(version: str,
                      path: Annotated[Path, typer.Argument(help="lm-eval's --output_path folder or a "
                                                           "results_*.json file (run with --log_samples).")],
                      task: Annotated[list[str] | None, typer.Option("--task", help="Only this task "
                                                                      "(repeatable).")] = None,
                      metric: Annotated[str | None, typer.Option(help="Per-sample metric to score by "
                                                                 "(default: acc, exact_match, …).")] = None,
                      actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Record lm-evaluation-harness results as evaluations of VERSION, per-example outcomes included."""
    from loopgate.evaluate.lmeval_import import import_lmeval

    ws = _ws(workspace)
    ws.store.version(version)
    evs = [ws.store.add_evaluation(e, actor=actor or "loopgate")
           for e in import_lmeval(path, version=version, tasks=task, metric=metric)]
    if json_out:
        emit([e.model_dump(mode="json", exclude={"examples"}) | {"examples": len(e.examples)} for e in evs])
        return
    for e in evs:
        out.print(f"{version} · {e.suite}: {e.score:.3f} over {e.n} examples (suite {e.suite_sha256[:12]})")


# ---------------------------------------------------------------------------------------------- release loop


def _release_json(o: Any) -> dict[str, Any]:
    d: dict[str, Any] = o.model_dump(mode="json")
    return d


def _print_release(o: Any) -> None:
    d = o.decision
    if o.note:
        out.print(f"[bold]{o.version}[/]: {o.note}")
        return
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[d.verdict.value]
    held = d.verdict.value == "pass" and not o.released
    state = "released to production" if o.released else (
        f"not released: auto_release is off — promote it with 'loopgate promote {o.version}'" if held
        else "not released")
    out.print(f"[bold]{o.version}[/]: decision [{colour}]{d.verdict.value}[/] ({state})")
    t = Table()
    for col in ("gate", "verdict", "blocking", "summary"):
        t.add_column(col)
    for g in d.gates:
        t.add_row(g.name, g.verdict.value, "yes" if g.blocking else "no", g.summary)
    out.print(t)
    for p in o.propagation:
        status = "pinned" if p.pinned else ("released" if p.released else "—")
        out.print(f"  ↳ {p.line}: {p.strategy or '-'} → {p.version or '-'} ({status}) {p.note}")


def _write_junit(path: Path, o: Any) -> None:
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


def _finish(o: Any, json_out: bool, junit: Path | None) -> None:
    if junit is not None:
        _write_junit(junit, o)
    if json_out:
        emit(_release_json(o))
    else:
        _print_release(o)
    if o.decision.verdict.value != "pass":
        raise typer.Exit(GateBlocked.exit_code)  # a passing decision held back by auto_release: false is not blocked


JunitOpt = Annotated[Path | None, typer.Option("--junit", help="Write the gate verdicts as JUnit XML.")]


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
    from loopgate.loop.release import update as run_update

    ws = _ws(workspace)
    o = run_update(ws, line, data, recipe_name=recipe, seed=seed, actor=actor,
                   progress=_progress(json_out, quiet), propagate=not no_propagate, again=again)
    _finish(o, json_out, junit)


@app.command()
def release(version: str, junit: JunitOpt = None, actor: ActorOpt = None, workspace: WorkspaceOpt = None,
            json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Gate a registered VERSION and release it if the gates allow; then propagate downstream."""
    from loopgate.loop.release import release as run_release

    ws = _ws(workspace)
    o = run_release(ws, version, actor=actor, progress=_progress(json_out, quiet))
    _finish(o, json_out, junit)


@app.command()
def plan(version: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """The downstream wave of VERSION, in tier order, with the transfer strategies to try (runs nothing)."""
    from loopgate.loop.release import plan as make_plan

    ws = _ws(workspace)
    wave = make_plan(ws, version)
    if json_out:
        emit({"version": version, "wave": wave})
        return
    t = Table(title=f"propagation plan for {version}")
    for col in ("line", "tier", "current", "action", "strategies (cheapest first)"):
        t.add_column(col)
    for w in wave:
        t.add_row(w["line"], w["tier"], w.get("current") or "", w["action"], " → ".join(w["strategies"]))
    out.print(t)


@app.command()
def promote(version: str, channel: Annotated[str, typer.Option("--channel", help="staging | canary | "
                                                                 "production")] = "production",
            actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Move a channel to VERSION (it needs a passing decision)."""
    from loopgate.loop.release import promote as run_promote

    ws = _ws(workspace)
    res = run_promote(ws, version, channel, actor=actor, progress=_progress(json_out, False))
    if json_out:
        emit(res)
        return
    out.print(f"{channel} of {res['moves'][0]['line']} → {version}")
    for p in res["propagation"]:
        out.print(f"  ↳ {p['line']}: {p['strategy'] or '-'} → {p['version'] or '-'} "
                  f"({'pinned' if p['pinned'] else 'released' if p['released'] else p['note']})")


@app.command()
def approve(version: str, actor: Annotated[str, typer.Option("--as", help="The approver.")],
            reason: Annotated[str, typer.Option("--reason", help="Why (kept in the ledger).")],
            override: Annotated[list[str] | None, typer.Option("--override", help="Gate whose inconclusive (or "
                                                               "overridable fail) verdict you accept.")] = None,
            junit: JunitOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False,
            quiet: QuietOpt = False) -> None:
    """Approve VERSION (two-person rule: never the requester), then re-decide and release if it passes."""
    from loopgate.loop.release import approve as run_approve

    ws = _ws(workspace)
    o = run_approve(ws, version, actor, reason, override, progress=_progress(json_out, quiet))
    _finish(o, json_out, junit)


@app.command()
def rollback(line: str, to: Annotated[str | None, typer.Option("--to", help="Version to restore (default: "
                                                                "the previous production version).")] = None,
             reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")] = "",
             actor: ActorOpt = None, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Move LINE's production back in one transaction; lines re-derived on it roll back with it."""
    from loopgate.loop.release import rollback as run_rollback

    ws = _ws(workspace)
    res = run_rollback(ws, line, to=to, reason=reason, actor=actor)
    if json_out:
        emit(res)
        return
    out.print(f"rolled back {line}: {res['from']} → {res['to']}")
    for c in res["cascade"]:
        out.print(f"  ↳ cascaded: {c['line']}: {c['from']} → {c['to']}")
    for a in res["apps_following"]:
        out.print(f"  ↳ app {a} now serves its model line's restored version")


@app.command()
def resume(workspace: WorkspaceOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Finish every update run that was started but did not finish (e.g. killed); report runs that failed on a
    user error (they are not re-run: fix the input and run the update again)."""
    from loopgate.loop.release import resume as run_resume

    ws = _ws(workspace)
    res = run_resume(ws, progress=_progress(json_out, quiet))
    if json_out:
        emit(res.model_dump(mode="json"))
        return
    for f in res.failed:
        out.print(f"[yellow]skipped[/] a failed update of {f.line} ({', '.join(f.data)}): {f.error}")
    if not res.finished:
        out.print("nothing to resume")
    for o in res.finished:
        _print_release(o)


@app.command()
def report(version: str, out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder.")] = None,
           workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Release notes and a model card for VERSION, as Markdown and a self-contained HTML page with plots."""
    from loopgate.report import build_report

    ws = _ws(workspace)
    ws.store.version(version)
    paths = build_report(ws, version, out_dir or ws.root / "reports" / version)
    if json_out:
        emit(paths.model_dump(mode="json"))
        return
    out.print(f"release notes: {paths.markdown}\nmodel card:    {paths.model_card}\nHTML:          {paths.html}")


@app.command()
def demo(workspace: WorkspaceOpt = None,
         quick: Annotated[bool, typer.Option("--quick", help="A reduced run (used by the tests).")] = False,
         json_out: JsonOpt = False) -> None:
    """Build a small real ecosystem and run it through the whole closed loop (minutes on a CPU)."""
    from loopgate.demo import run_demo

    result = run_demo(workspace or Path("demo-workspace"), quick=quick, console=err if json_out else out)
    if json_out:
        emit(result)
