"""The demo's story, one function per step.

Every step states the outcome the story tells and checks it against what was measured. The models are
trained for real, so on another machine (or seed) an outcome can differ: then the demo says which step,
what it expected and what it measured, finishes what it can, and exits non-zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from loopgate import loop
from loopgate.demo.reading import deciding, tightest
from loopgate.demo.tamper import tamper_copy
from loopgate.loop.outcomes import PropagationOutcome, ReleaseOutcome, RollbackOutcome
from loopgate.loop.workspace import Workspace
from loopgate.records import Verdict


class Claim(BaseModel):
    """One outcome the story tells, and whether this run measured it."""

    step: str
    claim: str
    holds: bool
    measured: str


def _attempts(p: PropagationOutcome) -> str:
    """Each strategy tried for a re-derived line, with ✓/✗."""
    return ", ".join(f"{a.strategy} {'✓' if a.accepted else '✗'}" for a in p.attempts) or "no strategy tried"


def _followed(o: ReleaseOutcome, lines: list[str]) -> tuple[bool, str]:
    """Whether each of ``lines`` was re-derived on the new parent and released, and what happened to each."""
    found = {p.line: p for p in o.propagation}
    ok, said = True, []
    for line in lines:
        p = found.get(line)
        if p is None:
            ok = False
            said.append(f"{line}: not re-derived")
        elif p.released and p.version:
            said.append(f"{line}: {p.strategy} → {p.version}")
        else:
            ok = False
            why = "; ".join(f"{a.strategy}: {a.reason[:160]}" for a in p.attempts)
            said.append(f"{line}: {'pinned' if p.pinned else 'not released'} ({p.note}{'; ' + why if why else ''})")
    return ok, "; ".join(said)


class Story:
    """What the story has measured so far (steps, claims, the step it is at) and how it says so."""

    def __init__(self, ws: Workspace, con: Console, data: dict[str, Path]) -> None:
        self.ws, self.con, self.data = ws, con, data
        self.progress = con.is_terminal
        self.steps: list[dict[str, Any]] = []
        self.claims: list[Claim] = []
        self.step = "1a"
        self.rb: RollbackOutcome | None = None
        self.transfers: list[dict[str, Any]] = []
        self.plasticity: list[dict[str, Any]] = []
        self.audit_ok = False
        self.tampered: dict[str, Any] = {}

    def expect(self, step: str, claim: str, holds: bool, measured: str) -> None:
        self.claims.append(Claim(step=step, claim=claim, holds=holds, measured=measured))
        if holds:
            self.con.print(f"  [green]✓ story:[/] {claim}")
        else:
            self.con.print(f"  [bold red]✗ story, step {step}: expected {claim}; measured {measured}[/]")

    def record(self, step: str, o: ReleaseOutcome) -> None:
        con = self.con
        gate, figure = deciding(o)
        self.steps.append({"step": step, "candidate": o.version, "verdict": o.decision.verdict.value,
                           "released": o.released, "deciding_gate": gate, "figure": figure,
                           "gates": {g.name: g.verdict.value for g in o.decision.gates},
                           "tightest": tightest(o.decision)})
        colour = "green" if o.released else "red"
        con.print(f"  [{colour}]{o.decision.verdict.value}[/] {o.version}: {gate} — {figure}")
        con.print(f"    [dim]closest to a threshold: {self.steps[-1]['tightest']}[/]")
        for p in o.propagation:
            if p.version is None and not p.pinned:
                continue  # a child with nothing released yet has nothing to re-derive
            con.print(f"    ↳ {p.line}: {_attempts(p)} → {p.version or '—'} "
                      f"({'pinned' if p.pinned else 'released' if p.released else p.note})")
            if p.version:
                con.print(f"      [dim]closest to a threshold: "
                          f"{tightest(self.ws.store.decisions(p.version)[-1])}[/]")

    def update(self, step: str, line: str, file: str, recipe: str | None = None) -> ReleaseOutcome:
        self.con.print(f"[bold]{step}[/]  loopgate update {line} --data data/{file}.jsonl"
                       + (f" --recipe {recipe}" if recipe else ""))
        o = loop.update(self.ws, line, [self.data[file]], recipe_name=recipe, actor="demo", progress=self.progress)
        self.record(step, o)
        return o

    def released(self, step: str, o: ReleaseOutcome, claim: str, children: Sequence[str] = ()) -> None:
        ok, said = _followed(o, list(children))
        self.expect(step, claim, o.released and ok,
                    f"{o.version} {o.decision.verdict.value} ({deciding(o)[0]}: {deciding(o)[1]})"
                    + (f"; {said}" if children else ""))

    def blocked(self, step: str, o: ReleaseOutcome, gate: str, claim: str) -> None:
        verdicts = {g.name: g.verdict for g in o.decision.gates}
        self.expect(step, claim, not o.released and verdicts.get(gate) is Verdict.failed,
                    f"{o.version} {'released' if o.released else 'blocked'}; {gate} {verdicts.get(gate, 'not run')}"
                    f" ({deciding(o)[0]}: {deciding(o)[1]})")


def build_the_tree(s: Story) -> None:
    """1. Build and release the whole tree: each line's first version, parents before children."""
    s.con.rule("1. build the ecosystem (v1 of every line)")
    for s.step, line in (("1a foundation", "base"), ("1b industrial", "support"), ("1c application", "billing"),
                         ("1d application", "returns")):
        s.released(s.step, s.update(s.step, line, f"{line}_v1"), f"{line}@1 ships: every gate passes")


def domain_update(s: Story) -> None:
    """2. New domain data: support updates with replay, ships, and its children are re-derived on it."""
    s.con.rule("2. new domain data → support ships, billing and returns follow")
    s.step = step = "2 domain update"
    s.released(step, s.update(step, "support", "support_v2"),
               "support ships, and billing and returns are re-derived on it and ship", ["billing", "returns"])


def updates_that_must_not_ship(s: Story) -> None:
    """3-5. Three updates that must not ship, each stopped by a different gate."""
    s.con.rule("3. an update that forgets an inherited skill")
    s.step = step = "3 forgetful update"
    s.blocked(step, s.update(step, "support", "support_forgetful", recipe="support-fast"), "inheritance",
              "the forgetful update is blocked by inheritance")
    s.con.rule("4. an update trained on unsafe chat logs")
    s.step = step = "4 unsafe update"
    s.blocked(step, s.update(step, "support", "support_unsafe"), "safety", "the unsafe update is blocked by safety")
    s.con.rule("5. an update that makes answers verbose")
    s.step = step = "5 verbose update"
    s.blocked(step, s.update(step, "support", "support_verbose"), "cost", "the verbose update is blocked by cost")


def new_foundation(s: Story) -> None:
    """6. A new foundation: plan the wave first, then release it and watch capability transfer."""
    ws = s.ws
    s.con.rule("6. a new foundation release")
    s.step = step = "6 new foundation"
    v2 = loop.train_candidate(ws, "base", [s.data["base_v2"]], recipe_name="foundation-continue", actor="demo",
                              progress=s.progress)
    for w in loop.plan(ws, v2.id):
        s.con.print(f"  plan: {w.line:<12} {w.action}  {' → '.join(w.strategies)}")
    o6 = loop.release(ws, v2.id, actor="demo", progress=s.progress)
    s.record(step, o6)
    s.transfers = [{"line": p.line, "strategy": p.strategy, "version": p.version, "pinned": p.pinned,
                    "tried": [a.strategy for a in p.attempts]}
                   for p in o6.propagation]
    s.released(step, o6, "the new foundation ships and propagates: support is re-derived by capability "
                         "transfer and ships, then billing and returns on it", ["support", "billing", "returns"])


def rollback_and_audit(s: Story, root: Path) -> None:
    """7. An incident on billing after release: roll back (its app follows), then check the ledger."""
    ws, con = s.ws, s.con
    con.rule("7. incident on billing → rollback; audit")
    s.step = step = "7 rollback and audit"
    s.rb = rb = loop.rollback(ws, "billing", reason="incident INC-1042: wrong refunds reported", actor="oncall")
    con.print(f"  rolled back billing {rb.from_version} → {rb.to_version}; apps following: "
              f"{', '.join(rb.apps_following)}")
    audit = ws.store.verify_ledger()
    s.audit_ok = audit.ok
    con.print(f"  audit verify: {'intact' if audit.ok else audit.problem} ({audit.entries} entries)")
    s.tampered = tampered = tamper_copy(ws.store, root / "tampered")  # works on SQLite and PostgreSQL registries
    con.print(f"  audit verify on a tampered copy: [red]{tampered['problem']}[/]")
    s.expect(step, "billing rolls back with billing-bot following, the ledger verifies and a tampered copy does "
                   "not", rb.from_version != rb.to_version and "billing-bot" in rb.apps_following and audit.ok
             and not tampered["ok"],
             f"billing {rb.from_version} → {rb.to_version}, apps {rb.apps_following}, ledger ok={audit.ok}, "
             f"tampered copy ok={tampered['ok']}")


def plasticity_of_support(s: Story) -> None:
    """8. Plasticity of the line that was updated most."""
    s.con.rule("8. plasticity of support across its versions")
    s.plasticity = plasticity_rows(s.ws, "support")
    for p in s.plasticity:
        s.con.print(f"  {p['version']}: headroom {p['headroom']:.2f}  dormant {p['dormant_ratio']:.3f}  "
                    f"eff. rank {p['effective_rank']:.1f}  |w| {p['weight_norm']:.1f}")


def plasticity_rows(ws: Workspace, line: str) -> list[dict[str, Any]]:
    """Each version of ``line``: its plasticity profile and its headroom against the foundation's first."""
    from loopgate.evaluate.plasticity import plasticity_headroom
    from loopgate.loop.evaluation import profile_version

    steps = ws.eco.policy_for(line).plasticity.probe_steps
    ref = profile_version(ws, ws.store.versions("base")[0].id, steps)
    rows = []
    for v in ws.store.versions(line):
        prof = profile_version(ws, v.id, steps)
        rows.append({"version": v.id, "headroom": plasticity_headroom(prof, ref), **prof})
    return rows


