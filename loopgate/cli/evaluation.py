"""Evaluation commands: evaluate, compare, import-lmeval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loopgate import loop
from loopgate.cli.app import (
    ActorOpt,
    JsonOpt,
    QuietOpt,
    WorkspaceOpt,
    app,
    emit,
    open_workspace,
    out,
    progress_enabled,
    table,
)
from loopgate.records import Evaluation


def _summary(e: Evaluation) -> dict[str, object]:
    """An evaluation without its per-example rows (their count instead): what a terminal or script wants."""
    return e.model_dump(mode="json", exclude={"examples"}) | {"examples": len(e.examples)}


@app.command()
def evaluate(version: str, suite: Annotated[list[str] | None, typer.Option("--suite", help="Only this suite "
                                                                             "(repeatable).")] = None,
             through_upstream: Annotated[bool, typer.Option("--through-upstream", help="Score what the line's "
                                                            "serving: server answers (recorded apart from the "
                                                            "in-process evaluation).")] = False,
             workspace: WorkspaceOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Evaluate VERSION on its line's suites (owned + inherited), cached by content; with --through-upstream,
    through the server that serves the line (generation and safety suites)."""
    evs = loop.evaluate_line_suites(open_workspace(workspace), version, suite, progress=progress_enabled(quiet),
                                    through_upstream=through_upstream)
    if json_out:
        emit([_summary(e) for e in evs.values()])
        return
    title = f"evaluation of {version}" + (f" through {next(iter(evs.values())).upstream}"
                                          if through_upstream and evs else "")
    t = table(title, ("suite", "kind", "n", "score", "95% CI", "p95 latency ms"))
    for name, e in evs.items():
        ci = f"[{e.ci_low:.2f}, {e.ci_high:.2f}]" if e.ci_low is not None and e.ci_high is not None else ""
        lat = e.metrics.get("latency_p95_ms")
        t.add_row(name, e.kind, str(e.n), f"{e.score:.3f}", ci, f"{lat:.1f}" if lat is not None else "")
    out.print(t)


@app.command()
def compare(version_a: str, version_b: str, workspace: WorkspaceOpt = None, json_out: JsonOpt = False,
            quiet: QuietOpt = False) -> None:
    """Per-suite deltas of B vs A with paired CIs, flips and exact McNemar p-values."""
    res = loop.compare_versions(open_workspace(workspace), version_a, version_b, progress=progress_enabled(quiet))
    if json_out:
        emit(res)
        return
    t = table(f"{version_b} vs {version_a}", ("suite", "n", "A", "B", "Δ", "95% CI", "−flips", "+flips", "McNemar p"))
    for r in res.suites:
        t.add_row(r.suite, str(r.n), f"{r.before_score:.3f}", f"{r.after_score:.3f}", f"{r.delta:+.3f}",
                  f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]", str(r.negative_flips), str(r.positive_flips),
                  f"{r.mcnemar_p:.3g}")
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

    evs = loop.import_evaluations(open_workspace(workspace), version,
                                  import_lmeval(path, version=version, tasks=task, metric=metric),
                                  actor=actor or "loopgate")
    if json_out:
        emit([_summary(e) for e in evs])
        return
    for e in evs:
        out.print(f"{version} · {e.suite}: {e.score:.3f} over {e.n} examples (suite {e.suite_sha256[:12]})")
