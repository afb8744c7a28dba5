"""Config against weights: a full model's weight files hold exactly the parameters its config.json implies (names,
shapes, floating point), checked on a meta-device skeleton, never by loading the tensors."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from loopgate.errors import ModelFileError, UnsafeModelError
from loopgate.models.files import FLOAT_DTYPES, check_finite, read_json, safetensors_header, weight_files


def check_weights_match_config(root: Path, headers: dict[Path, dict[str, tuple[str, tuple[int, ...]]]] | None = None
                               ) -> None:
    """The weight files of a full model hold exactly the parameters its config.json implies, in floating point."""
    weights = weight_files(root)
    if headers is None:
        headers = {}
    tensors: dict[str, tuple[str, tuple[int, ...], Path]] = {}
    for f in weights:
        for name, (dtype, shape) in (headers.get(f) or safetensors_header(f)).items():
            tensors[name] = (dtype, shape, f)
    config = load_config(root)
    if getattr(config, "quantization_config", None):
        return  # quantised checkpoints store packed tensors under other names; only their integrity is checked
    model = meta_skeleton(root, config)
    problems = _mismatches(model, {name: (shape, f) for name, (_, shape, f) in tensors.items()})
    if problems:
        raise ModelFileError(f"{root}: the weights do not match config.json — {'; '.join(problems)}. A model "
                             "folder needs the config.json its weights were saved with (save_pretrained writes both)")
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    rename = _checkpoint_renamer(model, {k: tuple(v.shape) for k, v in model.state_dict().items()})
    wrong = [f"{name} is {dtype} in {f.name}" for name, (dtype, _, f) in sorted(tensors.items())
             if dtype not in FLOAT_DTYPES and rename(name)[0] in params]
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise ModelFileError(f"{root}: weights must be floating point ({', '.join(sorted(FLOAT_DTYPES))}), but "
                             f"{', '.join(wrong[:3])}{more}; the file was altered or holds something else than "
                             "this model's weights — copy it again from its source")


def load_config(root: Path) -> PretrainedConfig:
    cfg = root / "config.json"
    if not cfg.is_file():
        raise UnsafeModelError(f"{root} has no config.json; pass a Hugging Face model directory")
    check_finite(cfg, read_json(cfg))
    try:
        return AutoConfig.from_pretrained(str(root), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelFileError(f"{cfg}: transformers cannot read it ({err})") from None


def meta_skeleton(root: Path, config: PretrainedConfig) -> PreTrainedModel:
    """The model config.json describes, built on the meta device (shapes only, no memory, no init)."""
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)  # type: ignore[no-any-return]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelFileError(f"{root / 'config.json'}: does not describe a causal LM transformers can build "
                             f"({type(err).__name__}: {err})") from None


def _mismatches(model: PreTrainedModel, tensors: dict[str, tuple[tuple[int, ...], Path]]) -> list[str]:
    """Missing, unexpected and wrongly shaped tensors, as short phrases (at most a few of each)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied: dict[str, list[str]] = {}  # a tied parameter is stored once, under any of its names
    for name, param in model.named_parameters(remove_duplicate=False):
        tied.setdefault(str(id(param)), []).append(name)
    rename = _checkpoint_renamer(model, expected)
    ignore_missing = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_missing", None) or ()]
    ignore_unexpected = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ()]
    found: set[str] = set()
    unexpected: list[str] = []
    wrong: list[str] = []
    for name, (shape, file) in sorted(tensors.items()):
        key, converted = rename(name)
        if key not in expected:
            if not any(p.search(key) for p in ignore_unexpected):
                unexpected.append(f"{name} (in {file.name})")
            continue
        found.add(key)
        # a converted tensor (experts fused at load time) legitimately has another shape than its target
        if not converted and shape != expected[key]:
            wrong.append(f"{name} has shape {list(shape)} in {file.name}, config.json implies {list(expected[key])}")
    missing = [n for names in tied.values() if not found.intersection(names) for n in names[:1]
               if not any(p.search(n) for p in ignore_missing)]
    problems = []
    for label, items in (("shape mismatch", wrong), ("missing", missing), ("not in the model", unexpected)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    return problems


def _checkpoint_renamer(model: PreTrainedModel, expected: dict[str, tuple[int, ...]]
                        ) -> Callable[[str], tuple[str, bool]]:
    """Checkpoint name → (model name, converted?) with transformers' own load-time renames (legacy names, an
    added or dropped base-model prefix, fused experts); identity when this transformers has none of that."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
    except ImportError:
        return lambda name: (name, False)
    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]

    def rename(name: str) -> tuple[str, bool]:
        key, pattern = rename_source_key(name, renamings, converters, model.base_model_prefix, expected)
        return key, pattern is not None

    return rename
