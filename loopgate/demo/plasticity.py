"""``loopgate demo --story plasticity``: repeated updates erode a line's plasticity, a remedy restores it.

Read it top to bottom. One foundation line learns to reverse words, ships, and is then updated again and again
with a harsh recipe (a high learning rate, no replay). Every update still passes the blocking gates — the skill
is kept — but the plasticity gate (warn-only) watches the line lose its ability to learn something new: the
fixed probe task ends at a higher loss after each update, and the gate names the remedy to try. The last update
trains the same data with that remedy (shrink-and-perturb: ``shrink``/``noise`` in the recipe) and ships with
its headroom restored. Every figure is measured on freshly trained tiny models; the run report
(``report/run-report.html``) has one row per update with its plasticity figures next to the gates' verdicts.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from loopgate import loop
from loopgate.demo.world import World, write_jsonl
from loopgate.errors import LoopgateError
from loopgate.gates.evidence import PlasticityEvidence
from loopgate.loop.workspace import Workspace
from loopgate.records import Verdict

TINY = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 256, "max_positions": 128}
PROBE_STEPS = 30
HARSH_UPDATES = 3  # two in quick mode
# the headroom a remedy must win back, as a multiple of the most eroded version's. Measured (quick mode): seed 0
# 0.16 → 1.56, seed 1 0.12 → 0.35 — restored, though not always above the gate's floor of 0.5
RESTORE_FACTOR = 2.0


def ecosystem(quick: bool, seed: int) -> dict[str, Any]:
    """The story's loopgate.yaml: one foundation line, three recipes."""
    s = 0.6 if quick else 1.0

    def steps(n: int) -> int:
        return max(10, int(n * s))

    recipes: dict[str, dict[str, Any]] = {
        "foundation": {"method": "sft", "steps": steps(500), "batch_size": 48, "lr": 3e-3, "warmup_steps": 10,
                       "max_length": 64, "model": TINY},
        # fast and careless: twice the foundation's learning rate and no replay — the skill survives (measured
        # 0.98-1.00), plasticity does not (headroom 0.27, 0.11, 0.03 after one, two, three of them; seed 0);
        # at lr 1e-2 without warm-up one update in three also broke the skill (regression Δ -0.39)
        "harsh": {"method": "sft", "steps": 150, "batch_size": 32, "lr": 6e-3, "warmup_steps": 20,
                  "max_length": 64},
        # the same kind of update with the remedy the plasticity gate names: shrink-and-perturb before training.
        # Measured from the third harsh update: shrink/noise 0.5/0.5 → headroom 0.10, 0.3/0.7 → 0.23, 0.2/0.8 with
        # 400 steps → 1.56, the skill relearnt to 1.00 each time
        "remedy": {"method": "sft", "steps": 400, "batch_size": 48, "lr": 3e-3, "warmup_steps": 10,
                   "max_length": 64, "shrink": 0.2, "noise": 0.8},
    }
    for recipe in recipes.values():
        recipe["seed"] = seed
    return {
        "name": "plasticity-story",
        "suites": {"reverse": {"path": "suites/reverse.jsonl", "kind": "generation", "max_new_tokens": 10}},
        "recipes": recipes,
        "lines": {"base": {"tier": "foundation", "recipe": "foundation", "suites": ["reverse"],
                           "description": "reverses words; updated again and again"}},
        "policy": {"defaults": {
            "regression": {"tolerance": 0.1, "max_negative_flip_rate": 0.3},
            "cost": {"max_mean_output_length_ratio": 2.0, "max_latency_p95_ratio": 4.0},
            "plasticity": {"probe_steps": PROBE_STEPS, "min_headroom": 0.5},
        }},
    }


def write_data(root: Path, world: World, updates: int) -> dict[str, Path]:
    """The foundation's corpus and one file of new words per later update (the same skill, fresh examples)."""
    d = root / "data"
    files = {"v1": write_jsonl(d / "v1.jsonl", world.skill_rows("reverse", world.words(1500)))}
    for i in range(updates):
        files[f"u{i + 1}"] = write_jsonl(d / f"u{i + 1}.jsonl",
                                         world.skill_rows("reverse", world.words(800, 1500 + 800 * i)))
    write_jsonl(root / "suites" / "reverse.jsonl", world.generation_suite("reverse"))
    return files


def _plasticity_row(o: loop.ReleaseOutcome) -> dict[str, Any]:
    """The plasticity gate's figures and advice from a decision."""
    gate = next(g for g in o.decision.gates if g.name == "plasticity")
    ev = gate.evidence_as(PlasticityEvidence)
    figures, headroom = ev.candidate, ev.headroom
    return {"headroom": round(headroom, 3) if headroom is not None else None,
            "plasticity gate": gate.verdict.value,
            "dormant": round(figures.get("dormant_ratio", float("nan")), 3),
            "effective rank": round(figures.get("effective_rank", float("nan")), 1),
            "weight norm": round(figures.get("weight_norm", float("nan")), 1),
            "probe loss": round(figures.get("probe_loss_end", float("nan")), 2),
            "remedy": ev.remedy or ""}


def run_plasticity_story(workspace: str | Path, *, quick: bool = False, seed: int = 0,
                         console: Console | None = None) -> dict[str, Any]:
    """Run the story in ``workspace`` (recreated); ``story_holds`` says whether erosion and restoration were
    measured as told."""
    con = console or Console()
    root = Path(workspace)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    t0 = time.perf_counter()
    updates = 2 if quick else HARSH_UPDATES
    data = write_data(root, World(seed), updates + 1)
    (root / "loopgate.yaml").write_text(yaml.safe_dump(ecosystem(quick, seed), sort_keys=False), encoding="utf-8")
    ws = Workspace.open(root)
    progress = con.is_terminal
    steps: list[dict[str, Any]] = []
    claims: list[dict[str, Any]] = []

    def expect(claim: str, holds: bool, measured: str) -> None:
        claims.append({"claim": claim, "holds": holds, "measured": measured})
        con.print(f"  [green]✓ story:[/] {claim}" if holds else
                  f"  [bold red]✗ story: expected {claim}; measured {measured}[/]")

    def update(step: str, file: str, recipe: str | None) -> loop.ReleaseOutcome:
        con.print(f"[bold]{step}[/]  loopgate update base --data data/{file}.jsonl"
                  + (f" --recipe {recipe}" if recipe else ""))
        o = loop.update(ws, "base", [data[file]], recipe_name=recipe, actor="demo", progress=progress)
        row = {"step": step, "candidate": o.version, "recipe": recipe or "foundation",
               "verdict": o.decision.verdict.value, "released": o.released,
               "blocking gates": ", ".join(g.name for g in o.decision.gates
                                           if g.blocking and g.verdict is not Verdict.passed) or "all pass",
               **_plasticity_row(o)}
        steps.append(row)
        con.print(f"  {row['verdict']} {o.version}: headroom {row['headroom']}  dormant {row['dormant']}  "
                  f"eff. rank {row['effective rank']}  |w| {row['weight norm']}  probe loss {row['probe loss']}")
        if row["remedy"]:
            con.print(f"  [yellow]plasticity gate (warning): try {row['remedy']}[/]")
        return o

    try:
        _erosion_and_remedy(con, update, expect, steps, updates)
    except LoopgateError as err:
        expect("the story can go on", False, f"{type(err).__name__}: {err}")

    wall = time.perf_counter() - t0
    html = _sum_up(con, ws, root, steps, seed, wall)
    holds = all(c["holds"] for c in claims)
    con.print("[green]The story held at every step.[/]" if holds else "[bold red]The story did not hold.[/]")
    return {"workspace": str(root), "wall_s": wall, "seed": seed, "steps": steps, "story": claims,
            "story_holds": holds, "report": str(html)}


def _erosion_and_remedy(con: Console, update: Callable[[str, str, str | None], loop.ReleaseOutcome],
                        expect: Callable[[str, bool, str], None], steps: list[dict[str, Any]], updates: int) -> None:
    """The story's three steps: the foundation ships, harsh updates erode its plasticity, the remedy restores it."""
    con.rule("1. the foundation ships")
    first = update("1 foundation", "v1", None)
    expect("base@1 ships", first.released, f"{first.version} {first.decision.verdict.value}")
    con.rule(f"2. {updates} harsh updates (high lr, no replay): the skill stays, plasticity goes")
    harsh = [update(f"2.{i + 1} harsh update", f"u{i + 1}", "harsh") for i in range(updates)]
    eroded = [s for s in steps[1:] if s["released"]]
    worst = min((s["headroom"] for s in eroded if s["headroom"] is not None), default=None)
    expect("every harsh update ships (the blocking gates see no harm)", all(o.released for o in harsh),
           ", ".join(f"{o.version} {o.decision.verdict.value}" for o in harsh))
    expect("plasticity erodes: the last shipped harsh update is below the headroom floor and the gate names a "
           "remedy", bool(eroded) and eroded[-1]["headroom"] is not None and eroded[-1]["headroom"] < 0.5
           and bool(eroded[-1]["remedy"]),
           f"headrooms {[s['headroom'] for s in eroded]}, remedy {eroded[-1]['remedy'] if eroded else '—'}")
    con.rule("3. the same kind of update with the remedy (shrink-and-perturb)")
    fixed = update("3 remedy update", f"u{updates + 1}", "remedy")
    restored = steps[-1]["headroom"]
    expect(f"the remedy ships with its headroom restored (≥ {RESTORE_FACTOR:g}× the most eroded)",
           fixed.released and restored is not None and worst is not None and restored >= RESTORE_FACTOR * worst,
           f"{fixed.version} {fixed.decision.verdict.value}, headroom {restored} (most eroded {worst})")


def _sum_up(con: Console, ws: Workspace, root: Path, steps: list[dict[str, Any]], seed: int, wall: float) -> Path:
    """The summary table and the HTML report (its path returned)."""
    table = Table(title=f"Plasticity story (seed {seed}) — {wall:.0f} s")
    for col in ("step", "candidate", "verdict", "headroom", "dormant", "effective rank", "weight norm", "probe loss"):
        table.add_column(col)
    for s in steps:
        table.add_row(*(str(s[c]) for c in ("step", "candidate", "verdict", "headroom", "dormant", "effective rank",
                                            "weight norm", "probe loss")))
    con.print(table)
    from loopgate.report import build_run_report

    html = build_run_report(ws, root / "report", "Loopgate demo — plasticity", steps)
    con.print(f"HTML report: {html}")
    return html
