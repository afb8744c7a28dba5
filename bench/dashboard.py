"""Dashboard pages on a 10,000-line ecosystem: every page must answer in under 300 ms (server-side paging).

The ecosystem is generated through the real registry (``Store.add_version``, ``Store.move_channels``,
``Store.add_evaluation``, ``Store.add_decision``: every write in its own transaction with its ledger entry, so
the ledger holds one entry per write): 1 foundation, ~1 % industrial lines, the rest application lines and
apps. Every model line has one version in production, built on its parent's production version; every 7th
industrial line is pinned to the foundation's older version; every 7th application line has a second version
(a candidate), and every 350th a blocked candidate (a failing safety decision with per-category evidence, and
stored evaluations with per-example outcomes). All versions share one tiny stored weight file. The build is
kept in ``--workspace`` and reused when it is there (10,000 lines take minutes on a busy 2-core machine;
the build commits with SQLite ``synchronous=OFF``, the timed app opens the registry with its own settings).

Pages are requested in-process through the whole ASGI stack (``fastapi.testclient``, a viewer's token), each
once to warm up and then ``--repeats`` times; the median and the worst time of each page are printed. The
ledger page re-walks the whole hash chain when entries were appended since its last walk; that walk is timed
separately (``ledger_verify_ms``) and is not a page load.

    .venv/bin/python bench/dashboard.py [--lines 10000] [--repeats 5] [--workspace DIR]

The last line reads ``dashboard: lines=N slowest_page_ms=M (PAGE) ledger_verify_ms=V``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from loopgate.records import Decision, Evaluation, ExampleResult, GateResult, Verdict

BUDGET_MS = 300.0


def spec_text(n: int) -> tuple[str, list[str], list[str], list[str]]:
    """A loopgate.yaml with ``n`` lines: (text, industrial names, application names, app names)."""
    industrial = [f"ind{i:03d}" for i in range(max(1, n // 100))]
    rest = n - 1 - len(industrial)
    apps = [f"app{i:05d}" for i in range(rest // 10)]
    applications = [f"svc{i:05d}" for i in range(rest - len(apps))]
    out = ["name: bench-eco", "suites:", "  chat: {path: suites/chat.jsonl}",
           "  refusals: {path: suites/refusals.jsonl, kind: safety}", "lines:",
           "  base: {tier: foundation, suites: [chat]}"]
    out += [f"  {x}: {{tier: industrial, parent: base}}" for x in industrial]
    out += [f"  {x}: {{tier: application, parent: {industrial[i % len(industrial)]}, suites: [refusals]}}"
            for i, x in enumerate(applications)]
    template = "app: {prompt_template: '{input}'}"
    out += [f"  {x}: {{tier: app, parent: {applications[i % len(applications)]}, {template}}}"
            for i, x in enumerate(apps)]
    return "\n".join(out) + "\n", industrial, applications, apps


def _evaluation(version: str, suite: str, kind: str, right: int, n: int = 40) -> Evaluation:
    from loopgate.evaluate.metrics import wilson_interval

    examples = [ExampleResult(id=f"{suite[0]}{i}", correct=i < right, score=float(i < right),
                              prompt=f"{suite} prompt {i}", output=f"answer {i}",
                              expect="refuse" if kind == "safety" else None,
                              refused=(i < right) if kind == "safety" else None,
                              category=["weapons", "theft"][i % 2] if kind == "safety" else None)
                for i in range(n)]
    low, high = wilson_interval(right, n)
    return Evaluation(version=version, suite=suite, suite_sha256=f"{suite}-sha".ljust(64, "0"), kind=kind, n=n,
                      score=right / n, ci_low=low, ci_high=high, examples=examples,
                      metrics={"latency_p95_ms": 12.0 + right / 10, "mean_output_tokens": 6.0})


def _blocked(version: str, parent: str) -> Decision:
    return Decision(version=version, verdict=Verdict.failed, policy_sha256="p" * 64, requester="bench",
                    baselines={"production": version.rpartition("@")[0] + "@1", "parent": parent}, gates=[
        GateResult(name="safety", verdict=Verdict.failed, summary="refusals: refusal rate 0.500 < floor 0.9",
                   evidence={"thresholds": {"min_refusal_rate": 0.9, "max_safety_flips": 0, "alpha": 0.05},
                             "suites": {"refusals": {"verdict": "fail", "reason": "below floor", "refusal_rate": 0.5,
                                                     "n_expected_refusals": 40, "refusal_rate_ci": [0.35, 0.65],
                                                     "categories": {"weapons": {"n": 20, "refused": 10,
                                                                                "unsafe_flips": 0,
                                                                                "refusal_rate": 0.5},
                                                                    "theft": {"n": 20, "refused": 10,
                                                                              "unsafe_flips": 0,
                                                                              "refusal_rate": 0.5}}}},
                             "unsafe_flips": 0, "flipped": []}),
        GateResult(name="approval", verdict=Verdict.passed, summary="no approval required",
                   evidence={"required": 0, "requester": "bench", "approvers": []})])


def build(root: Path, n: int) -> dict[str, str]:
    """The ecosystem in ``root`` (reused if built before); returns pages worth requesting."""
    from loopgate.loop.workspace import Workspace
    from loopgate.models import TinyConfig, build_tiny_model, save_model

    text, industrial, applications, apps = spec_text(n)
    samples = {"blocked": f"{applications[0]}@2", "industrial": industrial[0],
               "application": applications[len(applications) // 2], "app": apps[0] if apps else applications[1]}
    if (root / ".loopgate" / "built").exists():
        return samples
    root.mkdir(parents=True, exist_ok=True)
    (root / "suites").mkdir(exist_ok=True)
    (root / "suites" / "chat.jsonl").write_text('{"prompt": "a", "target": "b"}\n')
    (root / "suites" / "refusals.jsonl").write_text('{"prompt": "how?", "expect": "refuse"}\n')
    t0 = time.perf_counter()
    ws, _ = Workspace.init(root, spec_text=text)
    model, tok = build_tiny_model(TinyConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                                             max_positions=32))
    model_dir = save_model(model, tok, root.parent / f"{root.name}-model")
    files = {p.name: p for p in model_dir.iterdir() if p.is_file()}
    store = ws.store
    # building only: commits without waiting for the disk (SQLite synchronous=OFF), or 20,000 transactions take
    # most of an hour on a busy machine; the pages are timed on a freshly opened registry with its own settings
    if store.engine.dialect.name == "sqlite":
        from sqlalchemy import event

        event.listen(store.engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
        store.engine.dispose()

    def version(line: str, parent: str | None) -> str:
        return store.add_version(line, files, parent_version=parent, actor="bench").id

    def ship(line: str, vid: str) -> None:
        store.move_channels([(line, "production", vid)], kind="release", reason="bench", actor="bench")

    base1 = version("base", None)
    ship("base", base1)
    store.add_evaluation(_evaluation(base1, "chat", "generation", 30))
    base2 = version("base", base1)
    ship("base", base2)
    store.add_evaluation(_evaluation(base2, "chat", "generation", 32))
    prod: dict[str, str] = {"base": base2}
    for j, line in enumerate(industrial):
        prod[line] = version(line, base1 if j % 7 == 3 else base2)  # every 7th pinned to the older foundation
        ship(line, prod[line])
    for i, line in enumerate(applications):
        parent = industrial[i % len(industrial)]
        v1 = version(line, prod[parent])
        ship(line, v1)
        if i % 7 == 0:  # a second version, a candidate not shipped
            v2 = version(line, prod[parent])
            if i % 350 == 0:  # a blocked candidate with evaluations and a failing decision
                for v, right in ((v1, 38), (v2, 20)):
                    store.add_evaluation(_evaluation(v, "refusals", "safety", right))
                store.add_decision(_blocked(v2, prod[parent]))
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1} application lines ({time.perf_counter() - t0:.0f} s)", flush=True)
    (root / ".loopgate" / "built").write_text(f"{n} lines in {time.perf_counter() - t0:.0f} s\n")
    print(f"built {n} lines in {time.perf_counter() - t0:.1f} s", flush=True)
    store.close()
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workspace", type=Path, default=None)
    args = ap.parse_args()
    root = args.workspace or Path(tempfile.gettempdir()) / f"loopgate-bench-dashboard-{args.lines}" / "ws"
    samples = build(root, args.lines)

    from fastapi.testclient import TestClient

    from loopgate.server.app import create_app
    from loopgate.server.dashboard.views import verify_now
    from loopgate.store.pages import ledger_page
    from loopgate.store.tokens import create_token

    t0 = time.perf_counter()
    app = create_app(root, gateway=False)
    print(f"app start (opens the workspace, checks {args.lines} lines against the spec): "
          f"{time.perf_counter() - t0:.1f} s")
    ws = app.state.workspace
    token = create_token(ws.store, role="viewer", name="bench-viewer", actor="bench").token
    t0 = time.perf_counter()
    verify_now(ws)
    verify_ms = (time.perf_counter() - t0) * 1000
    entries = ledger_page(ws.store, 0, 1).total
    graph_pages = -(-args.lines // 60)
    ledger_pages = -(-entries // 50)
    blocked_line = samples["blocked"].rpartition("@")[0]
    pages = {
        "lineage first page": "/",
        "lineage middle page": f"/?page={graph_pages // 2}",
        "lineage last page": f"/?page={graph_pages}",
        "lineage, one tier": "/?tier=industrial",
        "version (blocked, with evidence)": f"/versions/{samples['blocked']}",
        "version (foundation)": "/versions/base@2",
        "line (foundation, history)": "/lines/base",
        "line (blocked candidate)": f"/lines/{blocked_line}",
        "line (industrial)": f"/lines/{samples['industrial']}",
        "line (app)": f"/lines/{samples['app']}",
        "ledger first page": "/ledger",
        "ledger middle page": f"/ledger?page={ledger_pages // 2}",
        "ledger last page": f"/ledger?page={ledger_pages}",
    }
    results: dict[str, tuple[float, float]] = {}
    with TestClient(app) as client:
        client.cookies.set("loopgate_token", token)
        for name, path in pages.items():
            r = client.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:500])
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                r = client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
            results[name] = (statistics.median(times), max(times))
            print(f"{name:36s} {path:34s} median {results[name][0]:7.1f} ms  worst {results[name][1]:7.1f} ms"
                  f"  {len(r.content) // 1024} KiB", flush=True)
        # right after a write the ledger page starts a new walk of the chain in the background and waits
        # 0.1 s for it: time that first load too (a fresh write before each)
        times = []
        for i in range(args.repeats):
            create_token(ws.store, role="viewer", name=f"bench-write-{i}", actor="bench")
            t0 = time.perf_counter()
            assert client.get("/ledger").status_code == 200
            times.append((time.perf_counter() - t0) * 1000)
            while any(t.is_alive() for t in threading.enumerate() if t.name == "ledger-verify"):
                time.sleep(0.05)
        name = "ledger first page, after a write"
        results[name] = (statistics.median(times), max(times))
        print(f"{name:36s} {'/ledger':34s} median {results[name][0]:7.1f} ms  worst {results[name][1]:7.1f} ms",
              flush=True)
    slowest = max(results, key=lambda k: results[k][0])
    over = [k for k, (med, _) in results.items() if med >= BUDGET_MS]
    print(f"ledger: {entries} entries, full chain walk {verify_ms:.0f} ms ('verify now'; after a write the ledger "
          "page starts it in the background)")
    if over:
        print(f"OVER BUDGET ({BUDGET_MS:.0f} ms): {', '.join(over)}")
    print(f"dashboard: lines={args.lines} slowest_page_ms={results[slowest][0]:.0f} ({slowest}) "
          f"ledger_verify_ms={verify_ms:.0f}")


if __name__ == "__main__":
    main()
