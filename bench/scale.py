"""Scale: ``loopgate status``, ``loopgate plan`` and a release decision on generated 1k-, 10k- and 100k-line
ecosystems, each timed as a whole command in a fresh interpreter (start-up and imports included).

The ecosystem: 1 foundation (3 versions), ~sqrt(N) industrial lines, the rest split between application lines
and apps; every model line has 1-3 versions and a production channel, and every 7th line is pinned (its
production version was built on its parent's previous version). The spec is a real ``loopgate.yaml``.

What is measured:
- ``status``: ``loopgate status --json`` (every line: channels, latest version, pinned note), and the Rich
  table (``loopgate status``) for reference;
- ``plan``: ``loopgate plan base@3 --json`` — the wave below the foundation, i.e. every other line;
- ``decide``: a fresh interpreter opens the workspace, gathers the gate context of one candidate version of an
  application line (its baselines' evaluations, approvals) and runs ``gating.decide_candidate`` on the gates
  that judge evaluations (regression, inheritance, safety, approval). The evaluations are pre-recorded through
  ``Store.add_evaluation``, so no model runs; the gates that need weights (cost, rollback, plasticity) are left
  out. It imports the service layer's gating module, which imports the model library (torch) today.

How the ecosystem is written: lines, versions, their files, channels and channel moves are inserted as bulk
rows into the registry's own tables (the ORM classes of ``loopgate.store.db``, one transaction), all versions
pointing at one tiny stored weight file (``ArtifactStore.put``). Generated history has no ledger entries —
appending 100k entries one by one would take most of the time budget and the ledger is not what is measured.
The decision's candidate, its evaluations and the baselines' evaluations go through the public registry
methods (``Store.add_version``, ``Store.add_evaluation``). ``Workspace.open`` then finds the registry in step
with the spec and writes nothing.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--repeats 3] [--keep DIR]

The last line reads ``scale: status_10k_s=A plan_10k_s=B decide_10k_s=C growth_10k_to_100k=G`` where G is the
largest ratio of a command's time at 100k to its time at 10k (status, plan, decide).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.orm import Session

from loopgate.records import Evaluation, ExampleResult, utcnow
from loopgate.store import Store
from loopgate.store.db import ArtifactRow, ChannelMoveRow, ChannelRow, LineRow, VersionFileRow, VersionRow

REPO = Path(__file__).resolve().parents[1]
DECIDE_GATES = ["regression", "inheritance", "safety", "approval"]
SUITE_ROWS = 40


def shape(n: int) -> tuple[int, int, int]:
    """(industrial, application, apps) for an ecosystem of ``n`` lines in all (1 foundation)."""
    ind = max(1, round(math.sqrt(n)))
    app_lines = (n - 1 - ind) // 2
    return ind, app_lines, n - 1 - ind - app_lines


def write_spec(root: Path, n: int) -> dict[str, tuple[str, str | None]]:
    """``loopgate.yaml`` and the suites' files; returns {line: (tier, parent)}."""
    ind, app_lines, apps = shape(n)
    lines: dict[str, tuple[str, str | None]] = {"base": ("foundation", None)}
    lines.update({f"i{k}": ("industrial", "base") for k in range(ind)})
    lines.update({f"a{k}": ("application", f"i{k % ind}") for k in range(app_lines)})
    lines.update({f"p{k}": ("app", f"a{k % app_lines}") for k in range(apps)})
    (root / "suites").mkdir(parents=True, exist_ok=True)
    for suite in ("core", "own"):
        rows = [json.dumps({"id": f"{suite}-{i}", "prompt": f"q{i}=", "target": f"t{i}"}) for i in range(SUITE_ROWS)]
        (root / "suites" / f"{suite}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = ["name: scale", "suites:", "  core: {path: suites/core.jsonl}", "  own: {path: suites/own.jsonl}",
           "lines:"]
    for name, (tier, parent) in lines.items():
        extra = ", suites: [core]" if tier == "foundation" else ", suites: [own]" if name == "a0" else ""
        par = f", parent: {parent}" if parent else ""
        app = ", app: {prompt_template: '{input}', channel: production}" if tier == "app" else ""
        out.append(f"  {name}: {{tier: {tier}{par}{extra}{app}}}")
    (root / "loopgate.yaml").write_text("\n".join(out) + "\n", encoding="utf-8")
    return lines


def versions_of(name: str, k: int) -> int:
    return 3 if name == "base" else 1 + k % 3


def generate(root: Path, n: int) -> str:
    """Write an ``n``-line workspace at ``root``; returns the decision's candidate version id."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    lines = write_spec(root, n)
    store = Store(root / ".loopgate")
    weights = root / "weights.bin"
    weights.write_bytes(b"\0" * 256)
    sha, size = store.artifacts.put(weights)
    now = utcnow()
    prod: dict[str, str] = {}
    prev_prod: dict[str, str] = {}
    line_rows, version_rows, file_rows, channel_rows, move_rows = [], [], [], [], []
    for k, (name, (tier, parent)) in enumerate(lines.items()):
        line_rows.append({"name": name, "tier": tier, "parent": parent, "created_at": now})
        if tier == "app":
            continue
        count = versions_of(name, k)
        built_on = None
        if parent is not None:  # every 7th line is pinned to its parent's previous production version
            built_on = prev_prod.get(parent, prod[parent]) if k % 7 == 0 else prod[parent]
        for number in range(1, count + 1):
            vid = f"{name}@{number}"
            version_rows.append({
                "id": vid, "line": name, "number": number, "kind": "full", "source": "register",
                "parent_version": built_on, "base_version": None, "recipe": None, "data_sha256": [], "seed": None,
                "provenance": {"generated": "bench/scale.py"}, "created_by": "bench", "created_at": now})
            file_rows.append({"version_id": vid, "path": "model.safetensors", "sha256": sha})
        prod[name] = f"{name}@{count}"
        prev_prod[name] = f"{name}@{max(1, count - 1)}"
        channel_rows.append({"line": name, "name": "production", "version_id": prod[name], "updated_at": now})
        move_rows.append({"line": name, "channel": "production", "from_version": None, "to_version": prod[name],
                          "kind": "release", "reason": "generated", "actor": "bench", "decision_id": None,
                          "created_at": now})
    with Session(store.engine) as s, s.begin():
        s.execute(insert(ArtifactRow), [{"sha256": sha, "size": size, "created_at": now}])
        for table, rows in ((LineRow, line_rows), (VersionRow, version_rows), (VersionFileRow, file_rows),
                            (ChannelRow, channel_rows), (ChannelMoveRow, move_rows)):
            for i in range(0, len(rows), 5000):
                s.execute(insert(table), rows[i:i + 5000])
    # the decision's candidate and every evaluation the gates read: the public registry methods
    cand = store.add_version("a0", {"model.safetensors": weights}, parent_version=prod["i0"], actor="bench")
    from loopgate.evaluate.suites import load_ecosystem_suite
    from loopgate.spec import load_ecosystem

    eco = load_ecosystem(root)
    suites = {name: load_ecosystem_suite(eco, name) for name in ("core", "own")}
    for vid, names in ((cand.id, ("core", "own")), (prod["a0"], ("core", "own")), (prod["i0"], ("core",))):
        for name in names:
            s_ = suites[name]
            store.add_evaluation(Evaluation(
                version=vid, suite=name, suite_sha256=s_.sha256, kind="generation", n=SUITE_ROWS, score=1.0,
                examples=[ExampleResult(id=f"{name}-{i}", correct=True, score=1.0) for i in range(SUITE_ROWS)],
                source="bench/scale.py"), actor="bench")
    store.close()
    return cand.id


DECIDE = """
import json, sys
from pathlib import Path
from loopgate.loop import gating
from loopgate.loop.workspace import Workspace
ws = Workspace.open(sys.argv[1])
cand = sys.argv[2]
v = ws.store.version(cand)
evs = {e.suite: e for e in ws.store.evaluations(cand)}
d = gating.decide_candidate(ws, line=v.line, candidate=cand, candidate_dir=Path(sys.argv[1]), candidate_evals=evs,
                            baselines=gating.version_baselines(ws, cand), requester="bench",
                            gates=json.loads(sys.argv[3]))
print(json.dumps({"verdict": d.verdict.value, "gates": {g.name: g.verdict.value for g in d.gates}}))
"""


CPU: dict[str, float] = {}  # command → median CPU seconds (user + system) of its process


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], repeats: int, label: str = "") -> tuple[float, str]:
    """Median wall seconds of ``cmd`` over ``repeats`` fresh runs (and its last stdout); the median CPU
    seconds go to ``CPU[label]`` — on a shared machine wall time also counts the waits for a core."""
    env = {**os.environ, "LOOPGATE_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    times, cpus, out = [], [], ""
    for _ in range(repeats):
        c, t = _children_cpu(), time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        times.append(time.perf_counter() - t)
        cpus.append(_children_cpu() - c)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-2000:]}")
        out = res.stdout
    if label:
        CPU[label] = statistics.median(cpus)
    return statistics.median(times), out


def measure(root: Path, n: int, cand: str, repeats: int) -> dict[str, float]:
    py = sys.executable
    ws = ["--workspace", str(root)]
    # the first command after a spec change parses the YAML (then kept as JSON by content hash)
    shutil.rmtree(root / ".loopgate" / "cache" / "spec", ignore_errors=True)
    cold_s, _ = timed([py, "-m", "loopgate", "status", "--json", *ws], 1, "status_cold")
    status_s, out = timed([py, "-m", "loopgate", "status", "--json", *ws], repeats, "status")
    rows = json.loads(out)["lines"]
    assert len(rows) == n, (len(rows), n)
    pinned = sum(r["pinned"] for r in rows)
    table_s = timed([py, "-m", "loopgate", "status", *ws], 1, "status_table")[0] if n <= 10_000 else float("nan")
    plan_s, out = timed([py, "-m", "loopgate", "plan", "base@3", "--json", *ws], repeats, "plan")
    wave = json.loads(out)["wave"]
    decide_s, out = timed([py, "-c", DECIDE, str(root), cand, json.dumps(DECIDE_GATES)], max(1, repeats - 1), "decide")
    verdict = json.loads(out)
    print(f"  {n:>7} lines: status {status_s:.2f}s wall / {CPU['status']:.2f}s cpu (Rich table {table_s:.2f}s; "
          f"first after a spec change {cold_s:.2f}s; {pinned} pinned)  "
          f"plan {plan_s:.2f}s / {CPU['plan']:.2f}s cpu ({len(wave)} steps)  "
          f"decide {decide_s:.2f}s / {CPU['decide']:.2f}s cpu ({verdict['verdict']}: {verdict['gates']})  "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    return {"status": status_s, "plan": plan_s, "decide": decide_s, "status_table": table_s, "status_cold": cold_s,
            **{f"{k}_cpu": v for k, v in CPU.items() if k not in ("status_table", "status_cold")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="comma-separated line counts")
    ap.add_argument("--repeats", type=int, default=3, help="runs per command (median); 100k runs once")
    ap.add_argument("--keep", type=Path, help="generate the workspaces here and keep them")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = args.keep or Path(tempfile.mkdtemp(prefix="loopgate-scale-"))
    results: dict[int, dict[str, float]] = {}
    try:
        for n in sizes:
            root = base / f"eco-{n}"
            t = time.perf_counter()
            cand = generate(root, n)
            print(f"generated {n} lines in {time.perf_counter() - t:.1f}s ({root})", flush=True)
            results[n] = measure(root, n, cand, args.repeats if n <= 10_000 else 1)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({str(n): {k: round(v, 3) for k, v in r.items()} for n, r in results.items()}))
    r10, r100 = results.get(10_000), results.get(100_000)
    growth = (max(r100[k] / r10[k] for k in ("status", "plan", "decide")) if r10 and r100 else float("nan"))

    def fmt(r: dict[str, float] | None, k: str) -> str:
        return f"{r[k]:.2f}" if r else "nan"

    print(f"scale: status_10k_s={fmt(r10, 'status')} plan_10k_s={fmt(r10, 'plan')} "
          f"decide_10k_s={fmt(r10, 'decide')} growth_10k_to_100k={growth:.2f}")


if __name__ == "__main__":
    main()
