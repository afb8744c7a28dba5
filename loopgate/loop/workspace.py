"""A workspace: a folder with ``loopgate.yaml`` (the ecosystem) and ``.loopgate/`` (registry, artifacts)."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopgate.errors import LoopgateError
from loopgate.executors import Executor, executor_for, executor_from_env
from loopgate.identity import normalise_identity
from loopgate.spec import SPEC_FILE, Ecosystem, load_ecosystem
from loopgate.store import Store

HOME = ".loopgate"

STARTER_SPEC = """\
# loopgate.yaml — the ecosystem: every line (model or app), its tier, parent, recipe, suites and policy.
# Tiers: foundation -> industrial -> application -> app. See docs/ecosystem.md and `loopgate demo` for a full example.
name: my-ecosystem

suites: {}
#  reversal:
#    path: suites/reversal.jsonl     # {"prompt": ..., "target": ...} per line
#    kind: generation                # generation | choice | safety
#    scorer: exact                   # exact | contains | regex

recipes:
  domain-sft:
    method: sft
    steps: 200
    lr: 0.001

lines:
  base:
    tier: foundation
    description: the foundation model (register one with `loopgate register base --model DIR`)

policy:
  defaults: {}
  tiers:
    foundation:
      approval: {approvers: 1}
"""


def current_user() -> str:
    """Who runs this: ``LOOPGATE_USER``, else the login name (recorded in the ledger as the actor)."""
    return normalise_identity(os.environ.get("LOOPGATE_USER") or getpass.getuser(),
                              what="LOOPGATE_USER (or the login name)")


def default_workspace() -> Path:
    return Path(os.environ.get("LOOPGATE_WORKSPACE", "."))


@dataclass
class Workspace:
    root: Path
    eco: Ecosystem
    store: Store
    # where the loop's jobs run (training, evaluation, profiling, transfer); in this process by default
    executor: Executor = field(default_factory=executor_from_env)
    # line → (the spec it was resolved from, its LineContext): loop/context.py's once-per-command answers
    line_contexts: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def open(cls, root: str | Path | None = None) -> Workspace:
        """Open an initialised workspace and register any lines newly declared in its spec."""
        path = Path(root) if root is not None else default_workspace()
        if not (path / SPEC_FILE).exists():
            raise LoopgateError(
                f"{path.resolve()} is not a Loopgate workspace (no {SPEC_FILE}); run 'loopgate init {path}' "
                "or point to the workspace folder (LOOPGATE_WORKSPACE)"
            )
        eco = load_ecosystem(path, cache_dir=path / HOME / "cache" / "spec")
        store = Store(path / HOME)
        declared = {name: (spec.tier.value, spec.parent) for name, spec in eco.lines.items()}
        # every command opens the workspace: one bulk read, and a write only for lines new or changed in the spec
        known = store.line_table()
        changed = {name: line for name, line in declared.items() if known.get(name) != line}
        if changed:
            store.sync_lines(changed)
        # the spec's executor: section, unless LOOPGATE_EXECUTOR says otherwise
        return cls(root=path, eco=eco, store=store, executor=executor_for(eco.executor))

    @classmethod
    def init(cls, root: str | Path, spec_text: str | None = None) -> tuple[Workspace, bool]:
        """Create the folder, a starter spec (unless one exists) and the registry. Returns (workspace, created)."""
        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        spec = path / SPEC_FILE
        created = not spec.exists()
        if created:
            spec.write_text(spec_text or STARTER_SPEC, encoding="utf-8")
        return cls.open(path), created
