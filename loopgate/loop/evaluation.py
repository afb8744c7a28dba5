"""The loop's evaluation step: which suites a line answers to, evaluating versions (and candidates that are
not versions yet) through the content-keyed cache as jobs, recording results in the registry (never
evaluating a pair twice), comparing versions, and recording evaluations made by other tools."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel

from loopgate.errors import LoopgateError
from loopgate.evaluate.metrics import PairedComparison, paired_comparison
from loopgate.evaluate.suites import Suite, load_ecosystem_suite
from loopgate.evaluate.upstream import UpstreamModel
from loopgate.executors import JobHandle, jobs
from loopgate.loop.context import line_context
from loopgate.loop.versions import version_ref
from loopgate.loop.workspace import Workspace
from loopgate.models.io import ModelRef, model_ref
from loopgate.records import Evaluation


def line_suites(ws: Workspace, line: str) -> tuple[list[str], list[str]]:
    """(owned, inherited) suite names of a line; an app answers to its model line's suites, and a model line
    answers to its apps' own suites too (each evaluated through its app's template and decoding settings)."""
    ctx = line_context(ws, line)
    return list(ctx.owned), list(ctx.inherited)


def load_suites(ws: Workspace, names: list[str]) -> list[Suite]:
    return [load_ecosystem_suite(ws.eco, n, lambda line, channel: grader_version(ws, line, channel)) for n in names]


def grader_version(ws: Workspace, line: str, channel: str) -> tuple[str, ModelRef]:
    """The version a judge or classifier line's channel holds now, and what to load to run it."""
    version_id = ws.store.channel(line, channel)
    if version_id is None:
        raise LoopgateError(f"the grader line '{line}' (a suite's judge or classifier) has no {channel} version; "
                            f"register one and release it to {channel} first")
    return version_id, version_ref(ws, version_id)


def evaluate_dir(ws: Workspace, path: Path | ModelRef, suites: list[Suite], label: str, progress: bool = False
                 ) -> dict[str, Evaluation]:
    """Evaluate a model folder that is not (yet) a version, e.g. a transfer candidate; cached by content."""
    evs = ws.executor.run(jobs.evaluate, model_dir=path, suites=suites, version=label,
                          cache_dir=ws.store.cache_dir("evaluations"), progress=progress)
    return {s.name: e for s, e in zip(suites, evs, strict=True)}


class PendingAdapterEvaluation:
    """One version's part of an evaluation job that evaluates several adapters on one loaded base."""

    def __init__(self, handle: JobHandle[dict[str, list[Evaluation]]], label: str, suites: list[Suite]) -> None:
        self._handle, self._label, self._suites = handle, label, suites

    def result(self) -> dict[str, Evaluation]:
        return {s.name: e for s, e in zip(self._suites, self._handle.result()[self._label], strict=True)}


def submit_adapter_evaluations(ws: Workspace, base_dir: Path, adapters: list[tuple[str, Path, list[Suite]]]
                               ) -> dict[str, PendingAdapterEvaluation]:
    """Adapters of one base (label, adapter folder, suites), evaluated as one job through one loaded base: the
    gateway's shared-base path (``loopgate.evaluate.adapters``) instead of a merged copy per adapter."""
    handle = ws.executor.submit(jobs.evaluate_adapters, base_dir=base_dir,
                                adapters=[(label, folder) for label, folder, _ in adapters],
                                suites={label: suites for label, _, suites in adapters},
                                cache_dir=ws.store.cache_dir("evaluations"))
    return {label: PendingAdapterEvaluation(handle, label, suites) for label, _, suites in adapters}


class PendingEvaluation:
    """An evaluation job submitted to the workspace's executor; ``result()`` waits for it."""

    def __init__(self, handle: JobHandle[list[Evaluation]], suites: list[Suite]) -> None:
        self._handle, self._suites = handle, suites

    def result(self) -> dict[str, Evaluation]:
        return {s.name: e for s, e in zip(self._suites, self._handle.result(), strict=True)}


def submit_evaluation(ws: Workspace, path: Path | ModelRef, suites: list[Suite], label: str, progress: bool = False
                      ) -> PendingEvaluation:
    """:func:`evaluate_dir`, started now and awaited later, so several models are evaluated at once on an
    executor with room for them (one after the other in-process)."""
    return PendingEvaluation(ws.executor.submit(jobs.evaluate, model_dir=path, suites=suites, version=label,
                                                cache_dir=ws.store.cache_dir("evaluations"), progress=progress),
                             suites)


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
        evs = evaluate_dir(ws, version_ref(ws, version_id), missing, version_id, progress)
        for s in missing:
            found[s.name] = ws.store.add_evaluation(evs[s.name], actor=actor)
    return {n: found[n] for n in suite_names}


def evaluate_line_suites(ws: Workspace, version_id: str, names: list[str] | None = None, *,
                         progress: bool = False, through_upstream: bool = False) -> dict[str, Evaluation]:
    """A version on its line's suites (owned + inherited), or only the named ones (each must be one of them);
    ``through_upstream``: scored on what the line's ``serving`` server answers (:func:`evaluate_upstream`)."""
    v = ws.store.version(version_id)
    owned, inherited = line_suites(ws, v.line)
    for n in names or []:
        if n not in ws.eco.suites:
            raise LoopgateError(f"unknown suite '{n}'; suites of {v.line}: {', '.join(owned + inherited)}")
    if through_upstream:
        return evaluate_upstream(ws, version_id, names or owned + inherited)
    return evaluate_version(ws, version_id, names or owned + inherited, progress=progress)


def upstream_of(ws: Workspace, version_id: str) -> UpstreamModel:
    """The server and model name the version's line is served by (``serving:``), with its key from the env."""
    v = ws.store.version(version_id)
    spec = ws.eco.line(v.line).serving
    if spec is None:
        raise LoopgateError(f"line '{v.line}' has no 'serving:' section in loopgate.yaml, so no upstream serves "
                            f"{version_id}; evaluate it without --through-upstream")
    if spec.lora is not None and v.kind == "adapter":
        raise LoopgateError(f"{version_id} is served as a vLLM adapter registered by `loopgate serve`; evaluating "
                            "it through the upstream is not supported yet: evaluate it without --through-upstream")
    name = spec.model_for(v.line, version_id)
    if not name:
        raise LoopgateError(f"lines.{v.line}.serving names no upstream model for {version_id}; list it under "
                            "serving.models or set serving.model")
    key = None
    if spec.api_key_env is not None:
        key = os.environ.get(spec.api_key_env) or None
        if key is None:
            raise LoopgateError(f"lines.{v.line}.serving takes the upstream's key from ${spec.api_key_env}, which "
                                "is not set; export it first")
    return UpstreamModel(spec.base_url, name, key, spec.timeout_s)


def evaluate_upstream(ws: Workspace, version_id: str, suite_names: list[str], *, actor: str = "loopgate"
                      ) -> dict[str, Evaluation]:
    """Evaluations of a version as its upstream serves it: from the registry, else asked now and recorded.

    Not through the content cache: an upstream's model name does not pin its weights, so only what this
    registry recorded (with ``upstream`` naming the server) is reused."""
    from transformers import AutoTokenizer

    from loopgate.evaluate.upstream import evaluate_upstream as score
    from loopgate.evaluate.upstream import through_upstream

    up = upstream_of(ws, version_id)
    suites = [through_upstream(s, up) for s in load_suites(ws, suite_names)]
    missing = [s for s in suites if ws.store.evaluation(version_id, s.sha256) is None]
    if missing:  # the version's own tokenizer renders chat rows, exactly as the in-process engine does
        tokenizer = AutoTokenizer.from_pretrained(str(version_ref(ws, version_id).base))
        for s in missing:
            ws.store.add_evaluation(score(s, tokenizer, up, version=version_id), actor=actor)
    found = {s.name: ws.store.evaluation(version_id, s.sha256) for s in suites}
    return {n: e for n, e in found.items() if e is not None}


def evaluate_versions(ws: Workspace, requests: list[tuple[str, list[str]]], *, progress: bool = False,
                      actor: str = "loopgate") -> list[dict[str, Evaluation]]:
    """:func:`evaluate_version` of several ``(version, suite names)`` at once: the jobs for what the registry
    lacks are submitted together (run at the same time on an executor with room), then recorded here."""
    pending: list[tuple[str, PendingEvaluation]] = []
    for version_id, names in requests:
        missing = [s for s in load_suites(ws, names) if ws.store.evaluation(version_id, s.sha256) is None]
        if missing:
            pending.append((version_id, submit_evaluation(ws, version_ref(ws, version_id), missing, version_id,
                                                          progress)))
    for version_id, p in pending:
        for ev in p.result().values():
            if ws.store.evaluation(version_id, ev.suite_sha256) is None:  # listed twice in ``requests``
                ws.store.add_evaluation(ev, actor=actor)
    return [evaluate_version(ws, version_id, names, progress=progress, actor=actor) for version_id, names in requests]


class SuiteComparison(PairedComparison):
    suite: str


class Comparison(BaseModel):
    """Version B against version A on every suite both answer to."""

    a: str
    b: str
    suites: list[SuiteComparison]


def compare_versions(ws: Workspace, version_a: str, version_b: str, *, progress: bool = False) -> Comparison:
    """Per-suite deltas of B vs A with paired intervals, flips and exact McNemar p-values."""
    a, b = ws.store.version(version_a), ws.store.version(version_b)
    sa, sb = line_suites(ws, a.line), line_suites(ws, b.line)
    common = [s for s in sa[0] + sa[1] if s in sb[0] + sb[1]]
    if not common:
        raise LoopgateError(f"{version_a} and {version_b} share no suite to compare on")
    ea, eb = evaluate_versions(ws, [(version_a, common), (version_b, common)], progress=progress)
    return Comparison(a=version_a, b=version_b, suites=[
        SuiteComparison(suite=s, **paired_comparison(ea[s], eb[s]).model_dump()) for s in common])


def import_evaluations(ws: Workspace, version_id: str, evaluations: list[Evaluation], *, actor: str
                       ) -> list[Evaluation]:
    """Record evaluations made by another tool (e.g. lm-evaluation-harness) as the version's."""
    ws.store.version(version_id)
    return [ws.store.add_evaluation(e, actor=actor) for e in evaluations]


def profile_dir(ws: Workspace, path: Path | ModelRef, probe_steps: int = 30) -> dict[str, float]:
    """Model-level figures of a model folder (parameter count, plasticity), cached by the weights' content."""
    return profile_dirs(ws, [(path, probe_steps)])[0]


def profile_dirs(ws: Workspace, requests: list[tuple[Path | ModelRef, int]]) -> list[dict[str, float]]:
    """:func:`profile_dir` of several ``(model, probe steps)``: the ones not cached yet are profiled as one batch
    of jobs (at the same time on an executor with room)."""
    from loopgate.evaluate.cache import directory_model_key
    from loopgate.evaluate.plasticity import profile_code_version

    caches: list[Path] = []
    for path, probe_steps in requests:
        ref = model_ref(path)
        key = directory_model_key(ref.base, ref.adapter)
        # keyed on the weights, the probe length and the code that computes the figures
        caches.append(ws.store.cache_dir("profiles") / f"{key}-{probe_steps}-{profile_code_version()[:16]}.json")
    handles = {i: ws.executor.submit(jobs.profile, model_dir=path, probe_steps=probe_steps)
               for i, ((path, probe_steps), cache) in enumerate(zip(requests, caches, strict=True))
               if not cache.exists()}
    profiles: list[dict[str, float]] = []
    for i, cache in enumerate(caches):
        if i not in handles:
            profiles.append({k: float(v) for k, v in json.loads(cache.read_text()).items()})
            continue
        prof = handles[i].result()
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(prof))
        os.replace(tmp, cache)
        profiles.append(prof)
    return profiles


def profile_version(ws: Workspace, version_id: str, probe_steps: int = 30) -> dict[str, float]:
    """:func:`profile_dir` of a version's loadable weights."""
    return profile_dir(ws, version_ref(ws, version_id), probe_steps)


def profile_versions(ws: Workspace, requests: list[tuple[str, int]]) -> list[dict[str, float]]:
    """:func:`profile_version` of several ``(version, probe steps)``, the uncached ones as one batch of jobs."""
    return profile_dirs(ws, [(version_ref(ws, version_id), probe_steps) for version_id, probe_steps in requests])
