"""A LoRA adapter against the base it applies to: peft's config, target modules the base has, and every LoRA
tensor's module, rank and shape — the check peft leaves out (it loads an adapter made for another model with no
error)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from loopgate.errors import ModelFileError
from loopgate.models.config_check import load_config, meta_skeleton
from loopgate.models.files import FLOAT_DTYPES, check_finite, positive_int, read_json, safetensors_header

# peft's saved names: base_model.model.<the module's path in the base model>.lora_A.weight
_LORA_KEY = re.compile(r"base_model\.model\.(.+)\.lora_([AB])\.weight")


_FIX = "save the adapter with peft's save_pretrained, on the model it was trained on"
Headers = dict[Path, dict[str, tuple[str, tuple[int, ...]]]]


@dataclass(frozen=True)
class _LoraConfig:
    """What an adapter_config.json says that the tensors are checked against."""

    r: int
    ranks: dict[str, int]
    targets: str | list[str]


def check_adapter(adapter: Path, base: Path, headers: Headers | None = None) -> None:
    """A LoRA adapter fits the full model folder ``base``: its adapter_config.json is peft's LoRA config (a positive
    rank, target modules the base has), and every LoRA tensor belongs to a targeted module of the base, with the
    config's rank and the module's shape, in floating point.

    peft itself loads an adapter made for another model with no error (FIELD-NOTES) and ignores a tensor whose
    module it does not target; this is the check it leaves out, from the headers and a meta-device skeleton.
    """
    cfg_path = adapter / "adapter_config.json"
    cfg = _lora_config(cfg_path)
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelFileError(f"{adapter} has no adapter_model.safetensors; peft loads an adapter's weights only "
                             f"from that name — {_FIX}")
    tensors = (headers or {}).get(weights) or safetensors_header(weights)
    modules = _base_modules(base.resolve(), (base / "config.json").stat().st_mtime_ns)
    _check_targets_exist(cfg_path, cfg.targets, modules, base)
    problems = _tensor_problems(tensors, cfg, modules)
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ModelFileError(f"{adapter}: the adapter does not fit its base {base} — {'; '.join(problems[:3])}{more}. "
                             f"An adapter folder needs the adapter_config.json its tensors were saved with; {_FIX}")


@functools.lru_cache(maxsize=8)
def _base_modules(base: Path, config_mtime_ns: int) -> dict[str, torch.nn.Module]:
    """The base's modules by name, from a meta-device skeleton built once per base folder (and config version): a
    gateway serving many adapter lines checks each adapter it loads against the same base, and building the
    skeleton of a large model is the slow part of the check."""
    return {name: m for name, m in meta_skeleton(base, load_config(base)).named_modules() if name}


def _lora_config(cfg_path: Path) -> _LoraConfig:
    """peft's LoRA config from adapter_config.json: finite numbers, a positive rank, target modules named."""
    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{cfg_path}: expected a JSON object, peft's adapter config; {_FIX}")
    check_finite(cfg_path, cfg)
    if cfg.get("peft_type") != "LORA":
        raise ModelFileError(f"{cfg_path}: peft_type is {cfg.get('peft_type')!r}; Loopgate applies LoRA adapters "
                             f"(peft_type \"LORA\") only — {_FIX}")
    r = cfg.get("r")
    ranks = cfg.get("rank_pattern") or {}
    if not isinstance(r, int) or not positive_int(r) or not isinstance(ranks, dict) \
            or not all(positive_int(v) for v in ranks.values()):
        raise ModelFileError(f"{cfg_path}: r is {r!r} (rank_pattern {ranks!r}); a LoRA rank is a positive integer — "
                             f"{_FIX}")
    targets = cfg.get("target_modules")
    if isinstance(targets, str):
        try:
            re.compile(targets)
        except re.error as err:
            raise ModelFileError(f"{cfg_path}: target_modules {targets!r} is not a valid regular expression ({err})"
                                 ) from None
    elif not (isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)):
        raise ModelFileError(f"{cfg_path}: target_modules is {targets!r}; it must name the modules of the base "
                             f"model the adapter changes — {_FIX}")
    return _LoraConfig(r, ranks, targets)


def _check_targets_exist(cfg_path: Path, targets: str | list[str], modules: dict[str, torch.nn.Module],
                         base: Path) -> None:
    """Every target module names a module of the base (else the adapter was made for another model)."""
    named: list[str] = [targets] if isinstance(targets, str) else targets
    unknown = [t for t in named if not any(_targeted(t if isinstance(targets, str) else [t], m) for m in modules)]
    if unknown:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in modules if _in_out(modules[name]) is not None})
        raise ModelFileError(f"{cfg_path}: target_modules {unknown} are not modules of the base model {base} "
                             f"(its linear layers are named {', '.join(leaves[:12])}); the adapter was made for "
                             "another model — register it on the version it was trained on")


def _tensor_problems(tensors: dict[str, tuple[str, tuple[int, ...]]], cfg: _LoraConfig,
                     modules: dict[str, torch.nn.Module]) -> list[str]:
    """Each tensor in floating point; each LoRA tensor on a targeted module of the base, with the config's rank and
    the module's shape; at least one LoRA tensor."""
    problems: list[str] = []
    n_lora = 0
    for key, (dtype, shape) in sorted(tensors.items()):
        if dtype not in FLOAT_DTYPES:
            problems.append(f"{key} is {dtype} (weights must be floating point)")
        m = _LORA_KEY.fullmatch(key)
        if m is None:
            continue
        n_lora += 1
        path, half = m.group(1), m.group(2)
        module = modules.get(path)
        if module is None:
            problems.append(f"{key} is for {path}, which the base model has not")
            continue
        if not _targeted(cfg.targets, path):
            problems.append(f"{key}: {path} is not in target_modules (peft would drop the tensor)")
        problems += _shape_problems(key, shape, half, path, _rank_for(path, cfg.r, cfg.ranks), module)
    if not n_lora:
        problems.append("adapter_model.safetensors holds no LoRA tensors (lora_A/lora_B)")
    return problems


def _shape_problems(key: str, shape: tuple[int, ...], half: str, path: str, rank: int,
                    module: torch.nn.Module) -> list[str]:
    """A lora_A tensor is (rank, in), a lora_B tensor (out, rank); for a layer of another kind, only the rank."""
    dims = _in_out(module)
    want = None if dims is None else (rank, dims[0]) if half == "A" else (dims[1], rank)
    got_rank = (shape[0] if half == "A" else shape[-1]) if shape else None
    if want is not None and shape != want:
        return [f"{key} has shape {list(shape)}; r={rank} and the base's {path} imply {list(want)}"]
    if want is None and got_rank != rank:
        return [f"{key} has rank {got_rank}, adapter_config.json says r={rank}"]
    return []


def _targeted(targets: str | list[str], module: str) -> bool:
    """peft's own rule: a list entry names a module or the last parts of its path; a string is a full-match regex."""
    if isinstance(targets, str):
        return re.fullmatch(targets, module) is not None
    return any(module == t or module.endswith("." + t) for t in targets)


def _rank_for(module: str, r: int, ranks: dict[str, int]) -> int:
    """The rank of one module: its ``rank_pattern`` entry (peft's rule: a regex on the end of the path), else ``r``."""
    for key, rank in ranks.items():
        try:
            if re.fullmatch(rf"(.*\.)?{key}", module):
                return int(rank)
        except re.error:
            continue
    return r


def _in_out(module: torch.nn.Module) -> tuple[int, int] | None:
    """(in, out) features of a layer LoRA can wrap: a Linear, or GPT-2's Conv1D (weight stored as in × out)."""
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, Conv1D):
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return None
