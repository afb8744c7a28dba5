"""Capability transfer: re-derive a child on its parent's new version, cheapest strategy first.

Strategies, in the order tried (DESIGN.md):

1. ``reattach`` — the child's LoRA adapter on the new parent. peft loads an adapter onto any base of the same
   shape without a word (its ``adapter_config.json`` still names the old base), so this is only legitimate here,
   where it is done on purpose and recorded in the candidate's ``transfer.json``.
2. ``diff_vector`` — child = new_parent + (old_child − old_parent), tensor by tensor (Lin et al. 2025,
   "fine-tuning transfer"; Cao et al. 2025, "Param Δ"); refused unless names, shapes and vocabularies match.
3. ``diff_vector_finetune`` — the diff-vector model plus a short fine-tune (``FINETUNE_SHARE`` of the recipe's
   steps) on the child's data ("recycle then fine-tune").
4. ``rerun`` — the child's recipe re-run on the new parent with the child's data.
5. ``distill`` — the old child's greedy completions on the child's data prompts become the targets of an
   update of the new parent (works even when the new parent's shapes or tokenizer differ).

Each candidate is handed to the caller's ``accept`` check (the inheritance gate); the first accepted one wins.
How much survives depends on how far the upgrade drifted (FIELD-NOTES), so the cheapest passing strategy
differs from case to case — which is why the gate, not this module, decides.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import PreTrainedModel

from loopgate.errors import TransferError
from loopgate.models import load_model, load_tokenizer, save_model, set_threads
from loopgate.records import TransferAttempt, TransferCandidate, TransferResult  # defined light, re-exported
from loopgate.spec import Recipe, plan_strategies
from loopgate.train.data import load_rows
from loopgate.train.methods import method_facts, row_kind_for
from loopgate.train.update import run_update

STRATEGIES = ("reattach", "diff_vector", "diff_vector_finetune", "rerun", "distill")
FINETUNE_SHARE = 0.3  # diff_vector_finetune trains this share of the recipe's steps
TRANSFER_RECORD = "transfer.json"


def shapes_match(old_parent: Path, new_parent: Path) -> bool:
    """Whether two model directories have the same tensor names/shapes and the same tokenizer vocabulary."""
    try:
        _check_compatible(old_parent, new_parent)
    except TransferError:
        return False
    return True


def transfer(old_parent: Path, new_parent: Path, old_child: Path, *, child_adapter: Path | None, recipe: Recipe,
             data: list[Path], accept: Callable[[TransferCandidate], tuple[bool, str]], out_root: Path,
             strategies: list[str] | None = None, progress: bool = False,
             replay: list[Path] | None = None) -> TransferResult:
    """Try strategies cheapest first and return the first candidate ``accept`` passes, with every attempt.

    ``old_child`` is the child's model directory; with ``child_adapter`` the child is that adapter on
    ``old_child`` (normally ``old_child == old_parent``). ``recipe`` and ``data`` are the child's own;
    ``replay`` (the inherited data) is rehearsed by every strategy that trains, as the child's updates did.
    Candidates are written under ``out_root/<strategy>/``; a strategy that cannot apply (no adapter, shapes
    differ) is recorded as not accepted with the reason.
    """
    if strategies is None:
        strategies = plan_strategies(child_adapter is not None, shapes_match(old_parent, new_parent))
    check_strategies(strategies)
    attempts: list[TransferAttempt] = []
    for strategy in strategies:
        started = time.perf_counter()
        try:
            candidate: TransferCandidate | None = transfer_candidate(
                strategy, old_parent, new_parent, old_child, child_adapter=child_adapter, recipe=recipe, data=data,
                out_dir=Path(out_root) / strategy, progress=progress, replay=replay)
            assert candidate is not None
            accepted, reason = accept(candidate)
        except TransferError as err:
            candidate, accepted, reason = None, False, f"not applicable: {err}"
        attempts.append(TransferAttempt(strategy=strategy, accepted=accepted, reason=reason,
                                        wall_s=round(time.perf_counter() - started, 3)))
        if accepted and candidate is not None:
            return TransferResult(accepted=candidate, attempts=attempts)
    return TransferResult(accepted=None, attempts=attempts)


def check_strategies(strategies: list[str]) -> None:
    """Refuse a strategy name this module does not know (a typo in ``transfer:``)."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise TransferError(f"unknown transfer strategies {unknown}; choose from {', '.join(STRATEGIES)}")


def transfer_candidate(strategy: str, old_parent: Path, new_parent: Path, old_child: Path, *,
                       child_adapter: Path | None, recipe: Recipe, data: list[Path], out_dir: Path,
                       progress: bool = False, replay: list[Path] | None = None) -> TransferCandidate:
    """Build one strategy's candidate under ``out_dir`` — a job: whether it is accepted is decided by the
    caller (the loop, through the release gates), never here. ``TransferError`` when it cannot apply."""
    set_threads()
    check_strategies([strategy])
    return _BUILDERS[strategy](Path(old_parent), Path(new_parent), Path(old_child),
                               Path(child_adapter) if child_adapter is not None else None, recipe,
                               [Path(p) for p in data], Path(out_dir), progress, [Path(p) for p in replay or []])


# --------------------------------------------------------------------------- checks


def _check_compatible(a: Path, b: Path) -> None:
    """Refuse (``TransferError``) unless ``a`` and ``b`` have equal vocabularies and tensor names/shapes."""
    va, vb = load_tokenizer(a).get_vocab(), load_tokenizer(b).get_vocab()
    if va != vb:
        raise TransferError(f"tokenizers differ between {a} and {b} ({len(va)} vs {len(vb)} tokens); token ids would "
                            "not mean the same thing — use 'rerun' or 'distill'")
    sa, sb = _shapes(a), _shapes(b)
    if sa != sb:
        diff = sorted(set(sa.items()) ^ set(sb.items()))[:3]
        raise TransferError(f"tensor names/shapes differ between {a} and {b} (e.g. {diff}); parameters cannot be "
                            "carried over — use 'rerun' or 'distill'")


def _shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    out: dict[str, tuple[int, ...]] = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open is not a mapping
                out[name] = tuple(st.get_slice(name).get_shape())
    return out


def _record(out: Path, **fields: object) -> None:
    """Write what was done on purpose (e.g. which base an adapter was re-attached to) next to the candidate."""
    out.mkdir(parents=True, exist_ok=True)
    (out / TRANSFER_RECORD).write_text(json.dumps(fields, indent=2, default=str), encoding="utf-8")


# Weight arithmetic (a diff vector, an adapter merged to disk) runs in float32 on the CPU, whatever the device and
# dtype models are served in: a fine-tune's delta is ~1 % of a weight, and bf16 (8 mantissa bits) would round it
# to noise; the result is a checkpoint, not a served model. Memory: each model once in float32.
MATH_DTYPE, MATH_DEVICE = "float32", "cpu"


def _child_model(old_child: Path, child_adapter: Path | None) -> PreTrainedModel:
    """The old child as one full model (its adapter merged in when it has one)."""
    loaded = load_model(old_child, child_adapter, dtype=MATH_DTYPE, device=MATH_DEVICE)
    model = loaded.model.merge_and_unload() if child_adapter is not None else loaded.model  # type: ignore[operator]
    return model  # type: ignore[no-any-return]


def _full_candidate(strategy: str, new_parent: Path, result_dir: Path, kind: str, out: Path) -> TransferCandidate:
    """A candidate from a ``run_update`` output; an adapter is also merged so the gate has a model to evaluate."""
    if kind == "full":
        return TransferCandidate(strategy=strategy, model_dir=result_dir, base_dir=new_parent)
    loaded = load_model(new_parent, result_dir, dtype=MATH_DTYPE, device=MATH_DEVICE)
    merged = save_model(loaded.model.merge_and_unload(), loaded.tokenizer, out / "model")  # type: ignore[operator]
    return TransferCandidate(strategy=strategy, model_dir=merged, adapter_dir=result_dir, base_dir=new_parent)


# --------------------------------------------------------------------------- strategies


def _reattach(old_parent: Path, new_parent: Path, old_child: Path, child_adapter: Path | None, recipe: Recipe,
              data: list[Path], out: Path, progress: bool, replay: list[Path] | None = None) -> TransferCandidate:
    if child_adapter is None:
        raise TransferError("the child has no adapter to re-attach")
    _check_compatible(old_parent, new_parent)
    adapter = out / "adapter"
    shutil.copytree(child_adapter, adapter, dirs_exist_ok=True)
    loaded = load_model(new_parent, adapter, dtype=MATH_DTYPE, device=MATH_DEVICE)
    model_dir = save_model(loaded.model.merge_and_unload(), loaded.tokenizer, out / "model")  # type: ignore[operator]
    _record(out, strategy="reattach", adapter_trained_on=old_parent, attached_to=new_parent, adapter=child_adapter)
    return TransferCandidate(strategy="reattach", model_dir=model_dir, adapter_dir=adapter, base_dir=new_parent)


def diff_vector(old_parent: Path, new_parent: Path, old_child: Path, out_dir: Path, *,
                child_adapter: Path | None = None) -> Path:
    """Write ``new_parent + (old_child − old_parent)`` (tensor by tensor) as a full model dir at ``out_dir``."""
    _check_compatible(old_parent, new_parent)
    _check_compatible(old_parent, old_child)
    old_p = load_model(old_parent, dtype=MATH_DTYPE, device=MATH_DEVICE).model.state_dict()
    child = _child_model(old_child, child_adapter).state_dict()
    new = load_model(new_parent, dtype=MATH_DTYPE, device=MATH_DEVICE)
    state = new.model.state_dict()
    with torch.no_grad():
        for name, tensor in state.items():
            if name not in child or name not in old_p or child[name].shape != tensor.shape:
                raise TransferError(f"tensor {name} is missing or differs in shape in the old parent or child")
            tensor.add_(child[name] - old_p[name])
    return save_model(new.model, new.tokenizer, out_dir)


def _diff_vector(old_parent: Path, new_parent: Path, old_child: Path, child_adapter: Path | None, recipe: Recipe,
                 data: list[Path], out: Path, progress: bool, replay: list[Path] | None = None) -> TransferCandidate:
    model_dir = diff_vector(old_parent, new_parent, old_child, out / "model", child_adapter=child_adapter)
    _record(out, strategy="diff_vector", old_parent=old_parent, new_parent=new_parent, old_child=old_child,
            child_adapter=child_adapter)
    return TransferCandidate(strategy="diff_vector", model_dir=model_dir, base_dir=new_parent)


def _diff_vector_finetune(old_parent: Path, new_parent: Path, old_child: Path, child_adapter: Path | None,
                          recipe: Recipe, data: list[Path], out: Path, progress: bool,
                          replay: list[Path] | None = None) -> TransferCandidate:
    start = diff_vector(old_parent, new_parent, old_child, out / "start", child_adapter=child_adapter)
    steps = max(1, round(FINETUNE_SHARE * recipe.steps))
    # the start is a full model, so a LoRA recipe is merged: the candidate's base is the diff-vector start
    lora = recipe.lora.model_copy(update={"merge": True}) if recipe.lora is not None else None
    short = recipe.model_copy(update={"steps": steps, "lora": lora, "warmup_steps": min(recipe.warmup_steps, steps)})
    result = run_update(start, short, data, out / "model", replay=replay, progress=progress)
    _record(out, strategy="diff_vector_finetune", start=start, steps=steps, provenance=result.provenance)
    return TransferCandidate(strategy="diff_vector_finetune", model_dir=result.out_dir, base_dir=new_parent)


def _rerun(old_parent: Path, new_parent: Path, old_child: Path, child_adapter: Path | None, recipe: Recipe,
           data: list[Path], out: Path, progress: bool, replay: list[Path] | None = None) -> TransferCandidate:
    result = run_update(new_parent, recipe, data, out / _folder_for(recipe.method),
                        replay=replay, progress=progress)
    _record(out, strategy="rerun", provenance=result.provenance)
    return _full_candidate("rerun", new_parent, result.out_dir, result.kind, out)


def _folder_for(method: str) -> str:
    """The work folder a re-derivation trains into: named for what the method makes."""
    return "adapter" if method_facts(method).makes_adapter else "model"


@torch.no_grad()
def distill_rows(old_child: Path, child_adapter: Path | None, prompts: list[str], *, max_new_tokens: int,
                 batch_size: int = 64) -> list[dict[str, str]]:
    """The old child's greedy completions on ``prompts`` as ``{"prompt", "completion"}`` rows."""
    model = _child_model(old_child, child_adapter).eval()
    tok = load_tokenizer(old_child)
    rows: list[dict[str, str]] = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i:i + batch_size]
        enc = tok(chunk, return_tensors="pt", padding=True)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,  # type: ignore[operator]
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        rows += [{"prompt": p, "completion": t} for p, t in zip(chunk, texts, strict=True)]
    return rows


def _distill(old_parent: Path, new_parent: Path, old_child: Path, child_adapter: Path | None, recipe: Recipe,
             data: list[Path], out: Path, progress: bool, replay: list[Path] | None = None) -> TransferCandidate:
    kind = row_kind_for(recipe.method)
    if kind == "text":
        raise TransferError("distillation needs prompts; a pretrain child's data has none")
    rows = [r for path in data for r in load_rows(path, kind)]
    tok = load_tokenizer(old_child)
    answers = [r.get("completion", r.get("chosen", "")) for r in rows]
    # room for the longest answer the child was taught, plus a little slack for its own variations
    max_new = max(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers) + 4
    targets = distill_rows(old_child, child_adapter, list(dict.fromkeys(r["prompt"] for r in rows)),
                           max_new_tokens=max_new)
    out.mkdir(parents=True, exist_ok=True)
    target_file = out / "distill.jsonl"
    target_file.write_text("".join(json.dumps(r) + "\n" for r in targets), encoding="utf-8")
    # a DPO child is distilled with supervised targets: the preference is already in its completions
    method = recipe.method if method_facts(recipe.method).distills else "sft"
    distill_recipe = recipe.model_copy(update={"method": method, "dpo": None})
    result = run_update(new_parent, distill_recipe, [target_file],
                        out / _folder_for(method), replay=replay, progress=progress)
    _record(out, strategy="distill", teacher=old_child, teacher_adapter=child_adapter, rows=len(targets),
            provenance=result.provenance)
    return _full_candidate("distill", new_parent, result.out_dir, result.kind, out)


_Builder = Callable[[Path, Path, Path, Path | None, Recipe, list[Path], Path, bool, list[Path]], TransferCandidate]
_BUILDERS: dict[str, _Builder] = {
    "reattach": _reattach,
    "diff_vector": _diff_vector,
    "diff_vector_finetune": _diff_vector_finetune,
    "rerun": _rerun,
    "distill": _distill,
}
