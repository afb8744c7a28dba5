"""The loop's evaluation step: which suites a line answers to, evaluating versions through the
content-keyed cache, and recording results in the registry (never evaluating a pair twice)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from loopgate.evaluate.runner import evaluate_model
from loopgate.evaluate.suites import Suite, load_ecosystem_suite
from loopgate.loop.versions import model_dir
from loopgate.loop.workspace import Workspace
from loopgate.records import Evaluation


def line_suites(ws: Workspace, line: str) -> tuple[list[str], list[str]]:
    """(owned, inherited) suite names of a line; an app answers to its model line's suites."""
    return ws.eco.owned_suites(line), ws.eco.inherited_suites(line)


def load_suites(ws: Workspace, names: list[str]) -> list[Suite]:
    return [load_ecosystem_suite(ws.eco, n) for n in names]


def cache_dir(ws: Workspace) -> Path:
    return ws.store.home / "cache" / "evaluations"


def evaluate_dir(ws: Workspace, path: Path, suites: list[Suite], label: str, progress: bool = False
                 ) -> dict[str, Evaluation]:
    """Evaluate a model folder that is not (yet) a version, e.g. a transfer candidate; cached by content."""
    evs = evaluate_model(path, suites, version=label, cache_dir=cache_dir(ws), progress=progress)
    return {s.name: e for s, e in zip(suites, evs, strict=True)}


def evaluate_version(ws: Workspace, version_id: str, suite_names: list[str], *, progress: bool = False,
                     actor: str = "loopgate") -> dict[str, Evaluation]:
    """Evaluations of a version on the named suites: from the registry, else the cache, else the engine."""
    suites = load_suites(ws, suite_names)
    found: dict[str, Evaluation] = {}
    missing: list[Suite] = []
    for s in suites:
        ev = ws.store.evaluation(version_id, s.sha256)
        if ev is not None:
            found[s.name] = ev
        else:
            missing.append(s)
    if missing:
        path = model_dir(ws, version_id)
        for s, ev in zip(missing, evaluate_model(path, missing, version=version_id, cache_dir=cache_dir(ws),
                                                 progress=progress), strict=True):
            found[s.name] = ws.store.add_evaluation(ev, actor=actor)
    return {n: found[n] for n in suite_names}


def profile_version(ws: Workspace, version_id: str, probe_steps: int = 30) -> dict[str, float]:
    """Model-level figures of a version (parameter count, plasticity), cached by the weights' content."""
    from loopgate.evaluate.cache import directory_model_key

    path = model_dir(ws, version_id)
    key = directory_model_key(path)
    cache = ws.store.home / "cache" / "profiles" / f"{key}-{probe_steps}.json"
    if cache.exists():
        return dict(json.loads(cache.read_text()))
    from loopgate.evaluate.engine import model_profile
    from loopgate.evaluate.plasticity import plasticity_profile
    from loopgate.models import load_model

    loaded = load_model(path)
    prof: dict[str, Any] = dict(model_profile(loaded.model))
    prof.update(plasticity_profile(loaded.model, loaded.tokenizer, probe_steps=probe_steps))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(prof))
    os.replace(tmp, cache)
    return {k: float(v) for k, v in prof.items()}
