"""Adding a gate and an update method touches only the files ``docs/architecture.md`` lists (#23).

The package is copied, and only the listed files are written: a toy gate (``gates/toy.py`` + one line in
``GATES``) and a toy update method (``train/toy.py`` + one ``METHODS`` entry + its name in the spec's
``Recipe.method``). A subprocess running the copy then updates a line with the toy method and releases it:
the toy method's version is built, and the toy gate's verdict decides it. Nothing else is edited, so a
dispatch that still compares method names, or a gate list kept somewhere else, fails here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "loopgate"

TOY_GATE = '''
from loopgate.gates.context import GateContext, result
from loopgate.records import GateResult, Verdict


def toy(ctx: GateContext) -> GateResult:
    """Blocks every candidate whose id ends in @2 (so the test can see the gate decide)."""
    if ctx.candidate.endswith("@2"):
        return result("toy", Verdict.failed, True, "the toy gate blocks @2", toy_saw=ctx.candidate)
    return result("toy", Verdict.passed, True, "the toy gate lets it through", toy_saw=ctx.candidate)
'''

TOY_METHOD = '''
from pathlib import Path

from loopgate.models import load_model, save_model
from loopgate.train.trained import FitStats, Trained


def toy(parent_dir: Path, out_dir: Path) -> Trained:
    """Copies its parent's weights (a method that trains nothing, for the extension test)."""
    loaded = load_model(parent_dir)
    save_model(loaded.model, loaded.tokenizer, out_dir)
    stats = FitStats(final_loss=0.0, tokens_seen=0, tokens_per_s=0.0, train_s=0.0, replay_rows_per_batch=0)
    return Trained("full", stats, sum(p.numel() for p in loaded.model.parameters()))
'''

METHOD_ENTRY = '''

def _toy(a: TrainInputs) -> Trained:
    from loopgate.train.toy import toy

    return toy(a.full_parent(), a.out_dir)


METHODS["toy"] = Method("toy", "full", "sft", frozenset(), _toy)
'''

SPEC = """\
name: extension
suites:
  facts: {path: suites/facts.jsonl, kind: generation, scorer: exact, max_new_tokens: 4}
recipes:
  toy: {method: toy, steps: 1}
lines:
  base: {tier: foundation, suites: [facts]}
  support: {tier: industrial, parent: base, suites: [facts], recipe: toy}
policy:
  defaults:
    regression: {min_examples: 0}
    inheritance: {min_examples: 0}
    plasticity: {probe_steps: 1}
    cost: {max_latency_p95_ratio: null, max_cost_per_1k_ratio: null, max_param_growth: null,
           max_mean_output_length_ratio: null}
"""

SCRIPT = """
import json, sys
from pathlib import Path
from loopgate import loop
from loopgate.loop.workspace import Workspace

assert loop.__file__.startswith(sys.argv[1]), loop.__file__  # the edited copy, not the checkout
root, model = Path(sys.argv[1]), Path(sys.argv[2])
ws, _ = Workspace.init(root / "ws", (root / "loopgate.yaml").read_text())
(root / "ws" / "suites").mkdir(exist_ok=True)
(root / "ws" / "suites" / "facts.jsonl").write_text('{"prompt": "ab>", "target": "ba"}\\n')
data = root / "data.jsonl"
data.write_text('{"prompt": "ab>", "completion": "ba"}\\n')
base = loop.register_model(ws, "base", model).id
first = loop.release(ws, base, actor="alice", propagate=False)
support = loop.register_model(ws, "support", model).id
loop.release(ws, support, actor="alice", propagate=False)
out = loop.update(ws, "support", [data], actor="alice", propagate=False)
gates = {g.name: g.verdict.value for g in out.decision.gates}
made = ws.store.version(out.decision.version)
print(json.dumps({"base_gates": {g.name: g.verdict.value for g in first.decision.gates}, "gates": gates,
                  "candidate": out.decision.version, "released": out.released,
                  "method": made.provenance.get("method"), "toy_saw": [g.evidence.get("toy_saw")
                  for g in out.decision.gates if g.name == "toy"]}))
"""


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path}: the docs' anchor {old!r} is not there once"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_a_toy_gate_and_a_toy_update_method_touch_only_the_listed_files(tmp_path: Path, tiny_model_dir: Path
                                                                         ) -> None:
    copy = tmp_path / "pkg" / "loopgate"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}

    # the gate: its module and one line in GATES (docs/architecture.md, "How to add a gate")
    (copy / "gates" / "toy.py").write_text(TOY_GATE, encoding="utf-8")
    _edit(copy / "gates" / "policy.py", '    "approval": lambda ctx, p: approval(ctx, p.approval),\n',
          '    "approval": lambda ctx, p: approval(ctx, p.approval),\n    "toy": lambda ctx, p: toy(ctx),\n')
    _edit(copy / "gates" / "policy.py", "\nGATES:", "\nfrom loopgate.gates.toy import toy  # noqa: E402\n\nGATES:")
    # the method: its module, one METHODS entry, its name in Recipe.method ("How to add an update method")
    (copy / "train" / "toy.py").write_text(TOY_METHOD, encoding="utf-8")
    methods = copy / "train" / "methods.py"
    methods.write_text(methods.read_text(encoding="utf-8") + METHOD_ENTRY, encoding="utf-8")
    _edit(copy / "spec" / "recipes.py", '"pretrain", "sft", "lora", "dpo", "grpo"]',
          '"pretrain", "sft", "lora", "dpo", "grpo", "toy"]')

    after = {p.relative_to(copy) for p in copy.rglob("*") if p.is_file()}
    changed = {p for p in after if p not in before or (copy / p).read_bytes() != before[p]}
    assert changed == {Path("gates/toy.py"), Path("gates/policy.py"), Path("train/toy.py"),
                       Path("train/methods.py"), Path("spec/recipes.py")}

    (tmp_path / "loopgate.yaml").write_text(SPEC, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(copy.parent), "HF_HUB_OFFLINE": "1", "LOOPGATE_THREADS": "1"}
    env.pop("LOOPGATE_WORKSPACE", None)
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(tiny_model_dir)], env=env,
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["base_gates"]["toy"] == "pass"  # base@1: the toy gate ran in the copy's decide
    assert seen["candidate"] == "support@2" and seen["method"] == "toy"  # the toy method built it
    assert seen["gates"]["toy"] == "fail" and seen["toy_saw"] == ["support@2"]
    assert seen["released"] is False  # the toy gate's verdict decided the release
