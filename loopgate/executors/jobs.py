"""The jobs: every heavy step of the loop as a plain function of serialisable inputs → a serialisable result.

Each takes paths (a model is a folder or a :class:`~loopgate.models.io.ModelRef`: a base folder plus an adapter
folder, merged in memory), not open models or a workspace, so it can run in another process; each loads what it
needs, does one thing, and writes only under the paths it is given — never into a version's checkout. The loop
gathers the inputs (from the store), runs the job through an executor and records the result.
"""

from __future__ import annotations

from pathlib import Path

from loopgate.evaluate.suites import Suite
from loopgate.models.io import ModelRef
from loopgate.records import Evaluation, ServingCost
from loopgate.spec import Recipe
from loopgate.train.transfer import TransferCandidate
from loopgate.train.update import UpdateResult


def train(*, parent_dir: Path | None, recipe: Recipe, data: list[Path], out_dir: Path,
          adapter_dir: Path | None = None, replay: list[Path] | None = None, progress: bool = False
          ) -> UpdateResult:
    """Train a candidate (full weights or an adapter) from ``parent_dir`` (with ``adapter_dir`` on it: continued
    by a LoRA/DPO update, merged in memory by a full one) on ``data``, rehearsing ``replay`` (which is also the
    KL/EWC retention set); writes only under ``out_dir``."""
    from loopgate.train import run_update

    return run_update(parent_dir, recipe, list(data), out_dir, adapter_dir=adapter_dir, replay=list(replay or []),
                      retention=list(replay or []), progress=progress)


def evaluate(*, model_dir: Path | ModelRef, suites: list[Suite], version: str, cache_dir: Path | None,
             progress: bool = False) -> list[Evaluation]:
    """Evaluations of the model on ``suites`` (through the content-keyed cache when ``cache_dir`` is given;
    ``None`` re-measures from the reloaded weights)."""
    from loopgate.evaluate.runner import evaluate_model

    return evaluate_model(model_dir, suites, version=version, cache_dir=cache_dir, progress=progress)


def evaluate_adapters(*, base_dir: Path, adapters: list[tuple[str, Path]], suites: dict[str, list[Suite]],
                      cache_dir: Path | None) -> dict[str, list[Evaluation]]:
    """Evaluations of several adapters of one base, through one loaded base with the adapters never merged (the
    gateway's path, :mod:`loopgate.evaluate.adapters`): per version, on its own suites."""
    from loopgate.evaluate.adapters import evaluate_adapters as on_one_base

    return on_one_base(base_dir, [(v, a, None) for v, a in adapters], suites, cache_dir=cache_dir)


def profile(*, model_dir: Path | ModelRef, probe_steps: int) -> dict[str, float]:
    """Model-level figures: parameter count and the plasticity measures."""
    from loopgate.evaluate.engine import model_profile
    from loopgate.evaluate.plasticity import plasticity_profile
    from loopgate.models import load_model, model_ref

    loaded = load_model(model_ref(model_dir))
    prof = dict(model_profile(loaded.model))
    prof.update(plasticity_profile(loaded.model, loaded.tokenizer, probe_steps=probe_steps))
    return {k: float(v) for k, v in prof.items()}


def serving(*, candidate_dir: Path | ModelRef, baseline_dir: Path | ModelRef | None, suites: list[Suite]
            ) -> list[ServingCost]:
    """The suites served by the candidate and the baseline back to back, in this one job."""
    from loopgate.evaluate.serving import serving_cost

    return serving_cost(candidate_dir, baseline_dir, suites)


def load_check(*, model_dir: Path | ModelRef) -> None:
    """Load the weights (safetensors, checked against the config) and discard them: can it still serve?"""
    from loopgate.models import load_model, model_ref

    load_model(model_ref(model_dir))


def transfer_candidate(*, strategy: str, old_parent: Path, new_parent: Path, old_child: Path,
                       child_adapter: Path | None, recipe: Recipe, data: list[Path], replay: list[Path],
                       out_dir: Path, progress: bool = False) -> TransferCandidate:
    """One capability-transfer strategy's candidate (``TransferError`` when it cannot apply)."""
    from loopgate.train.transfer import transfer_candidate as build

    return build(strategy, old_parent, new_parent, old_child, child_adapter=child_adapter, recipe=recipe,
                 data=data, out_dir=out_dir, progress=progress, replay=replay)
