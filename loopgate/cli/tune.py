"""``loopgate tune``: search a line's recipe, every trial judged by the release gates (:mod:`loopgate.loop.tune`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from loopgate.cli.app import ActorOpt, JsonOpt, QuietOpt, WorkspaceOpt, app, emit, err, open_workspace, out, table
from loopgate.errors import LoopgateError


def _enqueued(raw: list[str]) -> list[dict[str, Any]]:
    points = []
    for text in raw:
        try:
            point = json.loads(text)
        except json.JSONDecodeError as e:
            raise LoopgateError(f"--try {text!r} is not JSON: give a point of the space such as "
                                "'{\"lr\": 0.01, \"replay_share\": 0}'") from e
        if not isinstance(point, dict) or not all(isinstance(v, int | float) for v in point.values()):
            raise LoopgateError(f"--try {text!r}: a point is a JSON object of numbers")
        points.append(point)
    return points


@app.command()
def tune(line: str,
         data: Annotated[list[Path], typer.Option("--data", help="Update data (JSONL); repeat for several files.")],
         trials: Annotated[int, typer.Option("--trials", help="Trials to run (each trains and gates a candidate).")
                           ] = 10,
         recipe: Annotated[str | None, typer.Option("--recipe", help="Recipe to start from (default: the "
                                                    "line's).")] = None,
         write_recipe: Annotated[str | None, typer.Option("--write-recipe", help="Write the chosen recipe to "
                                                          "loopgate.yaml under this name.")] = None,
         study: Annotated[str | None, typer.Option("--study", help="Study name (a re-run continues it).")] = None,
         try_points: Annotated[list[str] | None, typer.Option("--try", help="A point of the space to try, as "
                                                              "JSON; repeatable.")] = None,
         seed: Annotated[int, typer.Option("--seed", help="Sampler and training seed.")] = 0,
         workspace: WorkspaceOpt = None, actor: ActorOpt = None, quiet: QuietOpt = False,
         json_out: JsonOpt = False) -> None:
    """Search LINE's recipe with Optuna: each trial trains a candidate (not a version), is judged by the release
    gates (feasible when every blocking gate passes), and scores the line's own suites against training cost.
    The feasible Pareto front is reported; --write-recipe saves the chosen recipe, which 'loopgate update LINE
    --recipe NAME' then trains and releases through the gates."""
    from loopgate.loop.tune import tune as run_tune

    if trials < 1:
        raise LoopgateError("--trials must be at least 1")
    ws = open_workspace(workspace)
    show = not quiet and not json_out
    with Progress(TextColumn("tune {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not show or not err.is_terminal) as bar:
        task = bar.add_task(line, total=trials)

        def on_trial(t: Any) -> None:
            bar.advance(task)
            if show:
                err.print(f"  trial {t.number}: {t.state}  score {t.score if t.score is None else round(t.score, 3)}"
                          f"  {', '.join(f'{k}={v:.3g}' for k, v in t.params.items())}"
                          + (f"  blocked by {', '.join(t.blocking)}" if t.blocking else ""))

        result = run_tune(ws, line, data, trials=trials, recipe_name=recipe, seed=seed, study_name=study,
                          enqueue=_enqueued(try_points or []), write_recipe=write_recipe, actor=actor,
                          on_trial=on_trial)
    if json_out:
        emit(result)
        return
    t = table(f"study {result.study} ({len(result.trials)} trials)",
              ("trial", "state", "score", "train FLOPs", "params", "blocking gates"))
    for r in result.trials:
        mark = " ★" if r.number == result.chosen else (" ·" if r.number in result.pareto else "")
        t.add_row(f"{r.number}{mark}", r.state, "—" if r.score is None else f"{r.score:.3f}",
                  "—" if r.train_flops is None else f"{r.train_flops:.3g}",
                  ", ".join(f"{k}={v:.3g}" for k, v in r.params.items()), ", ".join(r.blocking) or "—")
    out.print(t)
    out.print(f"feasible Pareto front: {result.pareto or 'empty'} (★ chosen)")
    if result.recipe is not None:
        out.print(f"chosen recipe: {json.dumps(result.recipe)}")
    if result.next_step:
        out.print(f"next: {result.next_step}")
