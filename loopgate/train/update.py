"""``run_update``: the one entry point of the update step — a plain function of its inputs.

It reads nothing but its arguments and writes nothing but ``out_dir``, so it can run in-process, in a
subprocess or on a Ray worker. The same parent, data, recipe and seed give bit-identical weights on CPU:
seeds are set, the data order comes from a seeded private RNG, and torch runs on one thread.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel
from transformers import set_seed

from loopgate.errors import SpecError
from loopgate.hashing import sha256_file
from loopgate.models import TinyConfig, char_tokenizer, load_tokenizer, set_threads
from loopgate.models.io import context_length
from loopgate.spec import Recipe
from loopgate.train.data import count_long_rows, data_sha256, load_rows
from loopgate.train.methods import METHODS, Trained, TrainInputs, method_facts

LIBRARIES = ("torch", "transformers", "peft", "trl", "safetensors", "tokenizers")
log = logging.getLogger(__name__)


class UpdateResult(BaseModel):
    """Where the candidate's artifact was written, what it is, and how it was made."""

    out_dir: Path
    kind: Literal["full", "adapter"]
    provenance: dict[str, Any]
    metrics: dict[str, float]


def run_update(parent_dir: Path | None, recipe: Recipe, data: list[Path], out_dir: Path, *,
               adapter_dir: Path | None = None, replay: list[Path] | None = None,
               retention: list[Path] | None = None, progress: bool = False) -> UpdateResult:
    """Train a candidate from ``parent_dir`` with ``recipe`` on ``data`` and write it to ``out_dir``.

    ``parent_dir`` is a full HF model directory (``None`` only for ``pretrain`` from scratch, which builds a tiny
    model); ``adapter_dir`` is an existing LoRA adapter to continue. ``replay`` files are mixed into every batch at
    ``recipe.replay.share`` (0.2 when the recipe has no ``replay`` section); KL and EWC regularise on
    ``retention`` + ``replay`` rows. The result's ``kind`` says whether ``out_dir`` is a full model or an adapter.
    """
    replay, retention = list(replay or []), list(retention or [])
    _check_inputs(parent_dir, recipe, adapter_dir, replay, retention)
    started = time.perf_counter()
    # Provenance that costs I/O runs beside the training: hashing a parent outside the store reads every byte of
    # its weights (seconds for a 1 B model), and hashlib and file reads release the GIL, so on a GPU it is free.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loopgate-provenance")
    try:
        return _run(parent_dir, recipe, data, out_dir, adapter_dir=adapter_dir, replay=replay, retention=retention,
                    progress=progress, started=started, parent_sha=pool.submit(_weights_sha256, parent_dir),
                    commit=pool.submit(code_version))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a failed run does not wait for its provenance


def _run(parent_dir: Path | None, recipe: Recipe, data: list[Path], out_dir: Path, *, adapter_dir: Path | None,
         replay: list[Path], retention: list[Path], progress: bool, started: float,
         parent_sha: Future[str | None], commit: Future[str]) -> UpdateResult:
    set_threads()
    set_seed(recipe.seed)  # python, numpy and torch RNGs; each method re-seeds right before it draws

    method = method_facts(recipe.method)
    rows = [row for path in data for row in load_rows(path, method.rows)]
    replay_rows = [row for path in replay for row in load_rows(path)]
    retention_rows = [row for path in retention for row in load_rows(path)]
    out_dir = Path(out_dir)
    if adapter_dir is not None:
        check_adapter_settings(recipe, parent_dir, adapter_dir)

    # rows longer than the model's positions would be an IndexError inside a GPT-2 embedding: the rows are cut to
    # the context (train/data.py says which tokens a cut row keeps), and the record says how many were cut
    given = recipe
    context = _context_positions(parent_dir, recipe)
    if method.cut_to_max_length and context is not None and context < recipe.max_length:
        recipe = recipe.model_copy(update={"max_length": context})
    truncated: dict[str, int] = {}
    if method.cut_to_max_length:
        tokenizer = load_tokenizer(parent_dir) if parent_dir is not None else char_tokenizer()
        truncated = {name: count_long_rows(part, tokenizer, recipe.max_length)
                     for name, part in (("data", rows), ("replay", replay_rows), ("retention", retention_rows))}
        if any(truncated.values()):
            log.warning("%s rows longer than %d tokens (recipe max_length %d, model context %s) were cut to fit",
                        " + ".join(f"{n} {name}" for name, n in truncated.items() if n), recipe.max_length,
                        given.max_length, context)

    trained: Trained = method.train(TrainInputs(parent_dir, adapter_dir, recipe, rows, out_dir,
                                                replay_rows=replay_rows, retention_rows=retention_rows,
                                                progress=progress))

    stats = trained.stats
    provenance: dict[str, Any] = {
        "method": recipe.method,
        "parent_dir": str(parent_dir) if parent_dir is not None else None,
        "parent_weights_sha256": parent_sha.result(),
        "adapter_dir": str(adapter_dir) if adapter_dir is not None else None,
        "data_sha256": data_sha256(data),
        "replay_sha256": data_sha256(replay),
        "retention_sha256": data_sha256(retention),
        "rows": len(rows),
        "replay_rows_per_batch": stats.replay_rows_per_batch,
        "recipe": given.model_dump(mode="json"),
        # what the rows were cut to (the recipe's max_length, or the model's context when that is shorter) and how
        # many rows of each kind were cut
        "max_length": recipe.max_length,
        "context_positions": context,
        "truncated_rows": truncated,
        "seed": recipe.seed,
        "libraries": {name: importlib.metadata.version(name) for name in LIBRARIES},
        "threads": torch.get_num_threads(),
        "code_version": commit.result(),
        "wall_s": round(time.perf_counter() - started, 3),
        "train_s": round(stats.train_s, 3),
        "tokens_seen": stats.tokens_seen,
        "params": trained.n_params,
        # the usual 6·N·D estimate (forward 2ND + backward 4ND); for LoRA the backward still runs through all N
        "train_flops": 6 * trained.n_params * stats.tokens_seen,
        "final_loss": stats.final_loss,
        "tokens_per_s": round(stats.tokens_per_s, 1),
        **trained.placement,  # device, dtype and the precision scheme it trained in
    }
    metrics = {"final_loss": stats.final_loss, "tokens_per_s": stats.tokens_per_s}
    return UpdateResult(out_dir=out_dir, kind=trained.kind, provenance=provenance, metrics=metrics)


def _check_inputs(parent_dir: Path | None, recipe: Recipe, adapter_dir: Path | None, replay: list[Path],
                  retention: list[Path]) -> None:
    method = method_facts(recipe.method)
    if parent_dir is None and method.needs_parent:
        fresh = " and ".join(f"'{m.name}'" for m in METHODS.values() if not m.needs_parent)
        raise SpecError(f"a '{recipe.method}' update needs a parent model; only {fresh} start from "
                        "a fresh tiny model")
    if adapter_dir is not None and parent_dir is None:
        raise SpecError("an adapter needs the parent model it was trained on")
    takes_none = not method.remedies & {"replay", "kl", "ewc"}
    if takes_none and (replay or retention or recipe.replay or recipe.kl or recipe.ewc):
        raise SpecError(f"a '{recipe.method}' recipe takes no replay, retention, kl or ewc; {method.anchor}")


def _context_positions(parent_dir: Path | None, recipe: Recipe) -> int | None:
    """How many positions the model trained takes: the parent's config.json, or the fresh tiny model's shape."""
    if parent_dir is None:
        return recipe.model.max_positions if recipe.model is not None else TinyConfig().max_positions
    try:
        config = json.loads((Path(parent_dir) / "config.json").read_bytes())
    except (OSError, ValueError):
        return None  # loading the parent names what is wrong with it
    return context_length(config) if isinstance(config, dict) else None


def check_adapter_settings(recipe: Recipe, parent_dir: Path | None, adapter_dir: Path) -> None:
    """An update that continues a LoRA adapter trains that adapter as it is: its rank, alpha, dropout, target modules
    and trainable tokens were fixed when it was made. A recipe whose ``lora`` section asks for others is refused,
    rather than trained without them and recorded with them; a recipe with no ``lora`` section takes the adapter's.
    """
    if recipe.lora is None or not method_facts(recipe.method).continues_adapter:
        return
    from loopgate.train.lora import token_ids

    config_path = Path(adapter_dir) / "adapter_config.json"
    try:
        cfg = json.loads(config_path.read_bytes())
    except (OSError, ValueError):
        return  # loading the adapter names what is wrong with it
    if not isinstance(cfg, dict):
        return
    settings = recipe.lora
    indices = cfg.get("trainable_token_indices")
    held = sorted({int(i) for ids in (indices.values() if isinstance(indices, dict) else [indices or []])
                   for i in ids})
    targets = cfg.get("target_modules")
    has: dict[str, Any] = {"r": cfg.get("r"), "alpha": cfg.get("lora_alpha"), "dropout": cfg.get("lora_dropout"),
                           "target_modules": sorted(targets) if isinstance(targets, list) else targets,
                           "trainable_tokens": held or None}
    asked: dict[str, Any] = {"r": settings.r, "alpha": settings.alpha, "dropout": settings.dropout}
    # unset target modules mean the model's defaults: whatever the adapter targets is what it was made with
    asked["target_modules"] = sorted(settings.target_modules) if settings.target_modules else has["target_modules"]
    tokenizer_dir = Path(adapter_dir)
    if parent_dir is not None and not (tokenizer_dir / "tokenizer_config.json").exists():
        tokenizer_dir = Path(parent_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    asked["trainable_tokens"] = token_ids(settings.trainable_tokens, tokenizer) if settings.trainable_tokens else None
    differ = [k for k in asked if asked[k] != has[k]]
    if differ:
        raise SpecError(
            f"this update continues the LoRA adapter in {adapter_dir}, made with "
            + ", ".join(f"{k}={has[k]}" for k in differ) + ", but the recipe's lora section asks for "
            + ", ".join(f"{k}={asked[k]}" for k in differ) + ". An adapter keeps the settings it was made with: "
            "make the recipe's lora section match them, or remove it to train the adapter as it is; an adapter with "
            "other settings starts from a full version (register one, e.g. the merged model)")


def _weights_sha256(model_dir: Path | None) -> str | None:
    """One sha256 over the parent's safetensors files, so provenance pins the exact weights trained from (a store
    checkout's recorded hashes when it is intact: no re-reading gigabytes of weights a run has just verified)."""
    if model_dir is None:
        return None
    from loopgate.store import trusted_hashes

    files = sorted(Path(model_dir).glob("*.safetensors"))
    known = trusted_hashes(Path(model_dir))

    def sha(f: Path) -> str:
        return known.get(f.name) or sha256_file(f)

    return sha(files[0]) if len(files) == 1 else "+".join(sha(f) for f in files) or None


def code_version() -> str:
    """The git commit of the Loopgate checkout (``+dirty`` with local changes), else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "loopgate"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return importlib.metadata.version("loopgate")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"
