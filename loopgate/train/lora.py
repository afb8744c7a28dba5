"""``lora``: a peft LoRA adapter on a frozen parent, saved as its own artifact (or merged into a full model)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.pytorch_utils import Conv1D

from loopgate.errors import SpecError
from loopgate.models import load_model, save_model, save_tokenizer
from loopgate.spec import LoraSettings, Recipe
from loopgate.train.loop import fit
from loopgate.train.precision import training_precision
from loopgate.train.trained import Trained


def token_ids(tokens: Sequence[int | str], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Map ``LoraSettings.trainable_tokens`` (ids, or strings that are one token each) to token ids."""
    ids: list[int] = []
    for t in tokens:
        if isinstance(t, int):
            if not 0 <= t < len(tokenizer):
                raise SpecError(f"lora.trainable_tokens: id {t} is outside the vocabulary (size {len(tokenizer)})")
            ids.append(t)
            continue
        enc = tokenizer(t, add_special_tokens=False)["input_ids"]
        if len(enc) != 1 or enc[0] == tokenizer.unk_token_id:
            raise SpecError(f"lora.trainable_tokens: {t!r} is not a single token of this tokenizer "
                            f"(it encodes to {enc}); list token ids instead")
        ids.append(enc[0])
    return sorted(set(ids))


def _module_name(model: nn.Module, module: nn.Module | None) -> str | None:
    return next((name.split(".")[-1] for name, m in model.named_modules() if m is module), None)


# the default before architectures were looked up: a model with any of these names keeps exactly what it got
# then (peft adapts the listed names it finds), so the tiny family and Llama-style models train as before
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# module types peft can put an adapter on (GPT-2's projections are transformers' Conv1D, not nn.Linear)
_ADAPTABLE = (nn.Linear, Conv1D, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def linear_module_names(model: nn.Module) -> list[str]:
    """The distinct short names (``c_attn``, ``q_proj``) of the model's linear layers, as ``target_modules``
    takes them."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                   if name and isinstance(m, (nn.Linear, Conv1D))})


def _adaptable_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if name and isinstance(m, _ADAPTABLE)]


def _matches(target: str, full_names: list[str]) -> bool:
    # peft's rule for a list entry: the module's full name is the entry, or ends with "." + the entry
    return any(n == target or n.endswith("." + target) for n in full_names)


def target_modules(settings: LoraSettings, model: nn.Module) -> list[str]:
    """The modules that get adapters: the recipe's ``target_modules``, each checked against the model, or (unset)
    the architecture's projections, so a GPT-2 gets ``c_attn`` instead of a peft error about Llama names.

    Unset resolves to the Llama-style projections the model has, else peft's per-architecture default for
    ``config.model_type``. Raises ``SpecError`` naming the modules that are missing and listing the model's
    linear layers, before any training starts."""
    full = _adaptable_names(model)
    model_type = getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__
    linear = ", ".join(linear_module_names(model)) or "(none)"
    if settings.target_modules is not None:
        missing = [t for t in settings.target_modules if not _matches(t, full)]
        if missing:
            raise SpecError(f"lora.target_modules: the model ({model_type}) has no module named "
                            f"{', '.join(repr(m) for m in missing)}; its linear modules are: {linear}. Name some "
                            "of those, or leave target_modules unset for the architecture's default")
        return list(settings.target_modules)
    llama = [t for t in LLAMA_TARGETS if _matches(t, full)]
    if llama:
        return llama
    mapped = [t for t in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type, []) if _matches(t, full)]
    if mapped:
        return mapped
    raise SpecError(f"lora.target_modules: no default projections are known for a {model_type} model; set "
                    f"lora.target_modules in the recipe to some of its linear modules: {linear}")


def lora_config(settings: LoraSettings, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> LoraConfig:
    """The peft ``LoraConfig`` for ``settings``.

    Use ``trainable_tokens`` when the update must make the model *emit* tokens the parent never learned to
    produce (e.g. upper-case letters for a parent trained on lower case only): a low-rank update of the
    attention/MLP weights cannot move those tokens' embedding and output rows, so LoRA alone stays near 0 %
    on such a task (FIELD-NOTES: 0.8 % → 99.6 %). The listed rows of the input embedding — and of the output
    head when it is not tied to it — are then trained as well (peft's ``trainable_token_indices``); the rest of
    the vocabulary stays frozen, so the adapter remains small. Leave it unset otherwise.
    """
    trainable: dict[str, list[int]] | None = None
    if settings.trainable_tokens:
        ids = token_ids(settings.trainable_tokens, tokenizer)
        trainable = {}
        for module in (model.get_input_embeddings(), model.get_output_embeddings()):
            name = _module_name(model, module)
            if name is not None and module is not None and name not in trainable:
                # a tied head shares the embedding's weight; training it twice would double-count the rows
                tied = module is model.get_output_embeddings() and getattr(model.config, "tie_word_embeddings", False)
                if not tied:
                    trainable[name] = ids
    targets = target_modules(settings, model)
    # GPT-2-style Conv1D layers store their weight transposed; saying so spares peft's warning that it flips it
    conv1d = any(isinstance(m, Conv1D) and any(_matches(t, [n]) for t in targets) for n, m in model.named_modules())
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        fan_in_fan_out=conv1d,
        trainable_token_indices=trainable,
        task_type="CAUSAL_LM",
    )


def lora(parent_dir: Path, recipe: Recipe, rows: Sequence[dict[str, str]], out_dir: Path, *,
         adapter_dir: Path | None = None, replay_rows: Sequence[dict[str, str]] = (),
         retention_rows: Sequence[dict[str, str]] = (), progress: bool = False) -> Trained:
    """Train a LoRA adapter on ``parent_dir`` (a new one, or continue ``adapter_dir``) and save it to ``out_dir``.

    The adapter directory holds ``adapter_model.safetensors`` + ``adapter_config.json`` + the tokenizer. With
    ``lora.merge: true`` the adapter is merged and ``out_dir`` is a full model directory instead.
    """
    settings = recipe.lora or LoraSettings()
    precision = training_precision(frozen_base=True)
    loaded = load_model(parent_dir, trainable=True, dtype=precision.load_dtype, device=precision.device)
    base, tokenizer = loaded.model, loaded.tokenizer
    torch.manual_seed(recipe.seed)  # LoRA's A matrices are drawn from the global RNG
    model: nn.Module
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=True)
    else:
        model = get_peft_model(base, lora_config(settings, base, tokenizer))
    n_params = sum(p.numel() for p in base.parameters())
    stats = fit(model, tokenizer, recipe, rows, replay_rows=replay_rows, retention_rows=retention_rows,
                progress=progress, description="lora", precision=precision)
    assert isinstance(model, PeftModel)
    if settings.merge:
        save_model(model.merge_and_unload(), tokenizer, out_dir)
        return Trained("full", stats, n_params, precision.record())
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    save_tokenizer(tokenizer, out_dir)
    return Trained("adapter", stats, n_params, precision.record())
