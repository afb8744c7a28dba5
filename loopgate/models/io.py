"""Loading and saving model directories: safetensors only, offline only, never pickle."""

from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers import utils as _hf_utils

from loopgate.errors import DeviceError, LoopgateError, ModelFileError, UnsafeModelError

# transformers draws a progress bar per shard load/save; Loopgate shows its own progress instead
_hf_utils.logging.disable_progress_bar()
# peft/trl still call transformers' deprecated gradient-checkpointing names; the warning is theirs to fix
warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated", category=FutureWarning)
_hf_utils.logging.set_verbosity_error()

# files that make up a model directory; anything else in the folder is ignored on registration
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".jinja")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (env ``LOOPGATE_THREADS``, default 1).

    On a shared 2-core machine more than one thread made small ops much slower (FIELD-NOTES), so one
    thread is the default and more is opt-in.
    """
    n = n or int(os.environ.get("LOOPGATE_THREADS", "1"))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def model_files(path: str | Path) -> list[Path]:
    """The files of a model or adapter directory, refusing folders whose weights are pickles only."""
    root = Path(path)
    if not root.is_dir():
        raise UnsafeModelError(f"{root} is not a folder; pass a Hugging Face model directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not any(p.suffix == ".safetensors" for p in files):
        pickles = [p.name for p in root.rglob("*") if p.suffix in PICKLE_SUFFIXES]
        hint = (f" It holds pickle weights ({', '.join(pickles[:3])}); Loopgate never unpickles model files — "
                "convert them with `model.save_pretrained(dir, safe_serialization=True)` in a trusted "
                "environment." if pickles else "")
        raise UnsafeModelError(f"{root} has no .safetensors weights.{hint}")
    return files


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


# --------------------------------------------------------------------------- checking model files

SAFE_WEIGHTS = "model.safetensors"
SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"
_MAX_HEADER = 100_000_000  # the safetensors format's own limit on the JSON header


# the dtypes a weight may have: a tensor relabelled to an integer type (same bytes, other meaning) loads as garbage
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})


def safetensors_header(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name → (dtype, shape) from a safetensors file's header, after checking that the file is complete.

    Reads the header only (a few KB), never the tensors: the file size must equal 8 + header length + the
    end of the last tensor's data, which is exactly what a truncated copy or a half-finished download breaks.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            prefix = f.read(8)
            n = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            raw = f.read(n) if 0 < n <= min(_MAX_HEADER, size - 8) else b""
    except OSError as err:
        raise ModelFileError(f"{p}: cannot be read ({err.strerror})") from None
    if not raw:
        raise ModelFileError(f"{p}: not a safetensors file, or truncated inside its header ({size} bytes); "
                             "copy the file again from its source")
    try:
        header = json.loads(raw)
        header.pop("__metadata__", None)
        tensors = {name: (str(info["dtype"]), tuple(int(d) for d in info["shape"])) for name, info in header.items()}
        end = max((int(info["data_offsets"][1]) for info in header.values()), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise ModelFileError(f"{p}: its safetensors header is unreadable; copy the file again from its source"
                             ) from None
    expected = 8 + n + end
    if size < expected:
        raise ModelFileError(f"{p} is truncated: it has {size} bytes, its header describes {expected}; "
                             "copy the file again from its source")
    if size > expected:
        raise ModelFileError(f"{p} has {size - expected} bytes after its last tensor (expected {expected} bytes "
                             "in all); it is not an intact safetensors file — copy it again from its source")
    try:  # the library's own checks on top (dtype sizes, overlapping or out-of-order offsets)
        with safe_open(str(p), framework="pt"):
            pass
    except SafetensorError as err:
        raise ModelFileError(f"{p}: not a valid safetensors file ({err}); copy it again from its source") from None
    return tensors


def safetensors_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape from a safetensors file's header (checked as :func:`safetensors_header` does)."""
    return {name: shape for name, (_, shape) in safetensors_header(path).items()}


# the JSON files whose numbers the model computes with: a NaN or an infinity in them (Python's json reads both)
# makes every logit NaN
CONFIG_FILES = ("config.json", "generation_config.json", "adapter_config.json")


def check_model_dir(path: str | Path, *, base: str | Path | None = None) -> None:
    """Refuse a model or adapter folder that would fail (or silently half-load) later.

    Every safetensors file must be complete, every JSON file readable and the numbers of its config files finite.
    A full model's config.json must build a causal LM whose parameters are exactly the tensors in its weight
    files, with the same shapes (tied weights may be stored once) and floating-point dtypes, and its tokenizer
    must load. An adapter must be a LoRA adapter that fits ``base``, the full model folder it applies to
    (:func:`check_adapter`; without ``base`` only its files are checked). What only running the model shows is
    :func:`check_forward`'s.
    """
    root = Path(path)
    files = model_files(root)
    headers = {f: safetensors_header(f) for f in files if f.suffix == ".safetensors"}
    for f in files:
        if f.suffix == ".json":
            data = _read_json(f)
            if f.name in CONFIG_FILES:
                _check_finite(f, data)
    if is_adapter_dir(root):
        if base is not None:
            check_adapter(root, Path(base), headers)
        return
    check_weights_match_config(root, headers)
    try:
        load_tokenizer(root)
    except Exception as err:  # whatever a tokenizer library raises on a bad file, the fix is the same
        raise ModelFileError(f"{root}: its tokenizer cannot be loaded ({type(err).__name__}: {err}); a model "
                             "folder needs the tokenizer files it was trained with (tokenizer.json or "
                             "tokenizer_config.json and its vocabulary)") from None


def check_weights_match_config(root: Path, headers: dict[Path, dict[str, tuple[str, tuple[int, ...]]]] | None = None
                               ) -> None:
    """The weight files of a full model hold exactly the parameters its config.json implies, in floating point."""
    weights = _weight_files(root)
    if headers is None:
        headers = {}
    tensors: dict[str, tuple[str, tuple[int, ...], Path]] = {}
    for f in weights:
        for name, (dtype, shape) in (headers.get(f) or safetensors_header(f)).items():
            tensors[name] = (dtype, shape, f)
    config = _load_config(root)
    if getattr(config, "quantization_config", None):
        return  # quantised checkpoints store packed tensors under other names; only their integrity is checked
    model = _skeleton(root, config)
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


def check_adapter(adapter: Path, base: Path,
                  headers: dict[Path, dict[str, tuple[str, tuple[int, ...]]]] | None = None) -> None:
    """A LoRA adapter fits the full model folder ``base``: its adapter_config.json is peft's LoRA config (a positive
    rank, target modules the base has), and every LoRA tensor belongs to a targeted module of the base, with the
    config's rank and the module's shape, in floating point.

    peft itself loads an adapter made for another model with no error (FIELD-NOTES) and ignores a tensor whose
    module it does not target; this is the check it leaves out, from the headers and a meta-device skeleton.
    """
    cfg_path = adapter / "adapter_config.json"
    fix = "save the adapter with peft's save_pretrained, on the model it was trained on"
    cfg = _read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{cfg_path}: expected a JSON object, peft's adapter config; {fix}")
    _check_finite(cfg_path, cfg)
    if cfg.get("peft_type") != "LORA":
        raise ModelFileError(f"{cfg_path}: peft_type is {cfg.get('peft_type')!r}; Loopgate applies LoRA adapters "
                             f"(peft_type \"LORA\") only — {fix}")
    r = cfg.get("r")
    ranks = cfg.get("rank_pattern") or {}
    if not isinstance(r, int) or not _positive_int(r) or not isinstance(ranks, dict) \
            or not all(_positive_int(v) for v in ranks.values()):
        raise ModelFileError(f"{cfg_path}: r is {r!r} (rank_pattern {ranks!r}); a LoRA rank is a positive integer — "
                             f"{fix}")
    targets = cfg.get("target_modules")
    if isinstance(targets, str):
        try:
            re.compile(targets)
        except re.error as err:
            raise ModelFileError(f"{cfg_path}: target_modules {targets!r} is not a valid regular expression ({err})"
                                 ) from None
    elif not (isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)):
        raise ModelFileError(f"{cfg_path}: target_modules is {targets!r}; it must name the modules of the base "
                             f"model the adapter changes — {fix}")
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelFileError(f"{adapter} has no adapter_model.safetensors; peft loads an adapter's weights only "
                             f"from that name — {fix}")
    tensors = (headers or {}).get(weights) or safetensors_header(weights)
    modules = {name: m for name, m in _skeleton(base, _load_config(base)).named_modules() if name}
    named: list[str] = [targets] if isinstance(targets, str) else targets
    unknown = [t for t in named if not any(_targeted(t if isinstance(targets, str) else [t], m) for m in modules)]
    if unknown:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in modules if _in_out(modules[name]) is not None})
        raise ModelFileError(f"{cfg_path}: target_modules {unknown} are not modules of the base model {base} "
                             f"(its linear layers are named {', '.join(leaves[:12])}); the adapter was made for "
                             "another model — register it on the version it was trained on")
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
        if not _targeted(targets, path):
            problems.append(f"{key}: {path} is not in target_modules (peft would drop the tensor)")
        rank = _rank_for(path, r, ranks)
        dims = _in_out(module)
        want = None if dims is None else (rank, dims[0]) if half == "A" else (dims[1], rank)
        got_rank = (shape[0] if half == "A" else shape[-1]) if shape else None
        if want is not None and shape != want:
            problems.append(f"{key} has shape {list(shape)}; r={rank} and the base's {path} imply {list(want)}")
        elif want is None and got_rank != rank:
            problems.append(f"{key} has rank {got_rank}, adapter_config.json says r={rank}")
    if not n_lora:
        problems.append("adapter_model.safetensors holds no LoRA tensors (lora_A/lora_B)")
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ModelFileError(f"{adapter}: the adapter does not fit its base {base} — {'; '.join(problems[:3])}{more}. "
                             f"An adapter folder needs the adapter_config.json its tensors were saved with; {fix}")


# peft's saved names: base_model.model.<the module's path in the base model>.lora_A.weight
_LORA_KEY = re.compile(r"base_model\.model\.(.+)\.lora_([AB])\.weight")
PROBE_TEXT = "Hello, world! 1 2 3"


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


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_forward(model: str | Path | ModelRef, *, tokens: int = 8) -> float:
    """Load the model (an adapter merged onto its base, in memory) and run one forward pass over a few tokens of
    text, without gradients: the tokenizer must fit the embedding and every logit must be finite. Returns the
    seconds it took, the load included.

    What no header shows: weights that hold NaN or inf, a config whose values break the computation, an adapter
    peft cannot apply, a tokenizer with ids past the embedding. One short forward is cheap next to the load.
    """
    started = time.perf_counter()
    ref = model_ref(model)
    try:
        loaded = load_model(ref)
    except LoopgateError:
        raise
    except (RuntimeError, ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
        raise ModelFileError(f"{ref}: cannot be loaded ({type(err).__name__}: {err}); the folder is not a model "
                             "transformers (and peft, for an adapter) can load as it is") from None
    tok, net = loaded.tokenizer, loaded.model
    rows = getattr(net.get_input_embeddings(), "num_embeddings", None)
    if rows is not None and len(tok) > rows:
        raise ModelFileError(f"{ref}: its tokenizer has {len(tok)} tokens but the model's embedding only {rows} "
                             "rows; a text with one of the last tokens would crash the model — a model folder needs "
                             "the tokenizer it was trained with")
    ids = list(tok(PROBE_TEXT)["input_ids"])[:tokens] or [int(tok.eos_token_id or 0)]
    try:
        with torch.inference_mode():
            logits = net(input_ids=torch.tensor([ids], device=loaded.device)).logits
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        raise ModelFileError(f"{ref}: a forward pass over {len(ids)} tokens fails ({type(err).__name__}: {err}); "
                             "the weights or config.json do not make a working model") from None
    if not bool(torch.isfinite(logits).all()):
        raise ModelFileError(f"{ref}: a forward pass over {len(ids)} tokens gives non-finite logits (NaN or inf); "
                             "its weights or config.json hold values that break the model — copy it again from its "
                             "source, or register the checkpoint before the training run diverged")
    return time.perf_counter() - started


def context_length(config: Any) -> int | None:
    """The most positions the model takes (``max_position_embeddings``; ``n_positions`` for the GPT-2 family),
    from a config object or a config.json dict; None when it does not say."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        if isinstance(value, int) and _positive_int(value):
            return value
    return None


def _check_finite(path: Path, data: Any, where: str = "") -> None:
    """Every number in a config file is finite; the error names the key."""
    if isinstance(data, float) and not math.isfinite(data):
        raise ModelFileError(f"{path}: {where or 'the value'} is {data}; a model's config numbers must be finite — "
                             "fix the value (or copy the file again from its source)")
    if isinstance(data, dict):
        for k, v in data.items():
            _check_finite(path, v, f"{where}.{k}" if where else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _check_finite(path, v, f"{where}[{i}]")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (ValueError, OSError) as err:
        raise ModelFileError(f"{path}: not valid JSON ({err}); copy the file again from its source") from None


def _weight_files(root: Path) -> list[Path]:
    """The files transformers loads a full model from: the shards of the index, or model.safetensors."""
    index = root / SAFE_WEIGHTS_INDEX
    if index.exists():
        data = _read_json(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelFileError(f"{index}: no weight_map; it does not say which shard holds which tensor")
        for name in sorted({str(s) for s in weight_map.values()}):
            # a path (``../x``, ``/etc/x``, ``sub/x``) would make transformers read a file outside the folder
            if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
                raise ModelFileError(f"{index}: its weight_map names {name!r}, not a file in the model folder; an "
                                     "index names shard files beside it, by file name only")
        shards = sorted({root / str(s) for s in weight_map.values()})
        for shard in shards:
            if not shard.is_file():
                raise ModelFileError(f"{shard}: missing, but {index.name} lists it; copy every shard of the model")
        return shards
    if (root / SAFE_WEIGHTS).is_file():
        return [root / SAFE_WEIGHTS]
    raise ModelFileError(f"{root} has no {SAFE_WEIGHTS} (or {SAFE_WEIGHTS_INDEX}); transformers loads a model's "
                         "weights only from those names")


def _load_config(root: Path) -> PretrainedConfig:
    cfg = root / "config.json"
    if not cfg.is_file():
        raise UnsafeModelError(f"{root} has no config.json; pass a Hugging Face model directory")
    _check_finite(cfg, _read_json(cfg))
    try:
        return AutoConfig.from_pretrained(str(root), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelFileError(f"{cfg}: transformers cannot read it ({err})") from None


def _skeleton(root: Path, config: PretrainedConfig) -> PreTrainedModel:
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


@dataclass(frozen=True)
class ModelRef:
    """What to load for a version: a full model folder and, for an adapter version, the adapter to apply on it.

    An adapter version is evaluated and served from these two folders (the base's and its own checkout),
    merged in memory when loaded for inference — never merged to disk, so it costs only its adapter's bytes.
    A plain, picklable value: jobs take it as their model input and may run in another process.
    """

    base: Path
    adapter: Path | None = None

    def __str__(self) -> str:
        return str(self.base) if self.adapter is None else f"{self.base} + {self.adapter}"


def model_ref(model: str | Path | ModelRef, adapter: str | Path | None = None) -> ModelRef:
    """``model`` as a :class:`ModelRef` (a folder, or a ref, optionally with an adapter on top)."""
    if isinstance(model, ModelRef):
        if adapter is not None and model.adapter is not None:
            raise UnsafeModelError(f"{model} already has an adapter; cannot apply {adapter} on top of it too")
        return model if adapter is None else ModelRef(model.base, Path(adapter))
    return ModelRef(Path(model), Path(adapter) if adapter is not None else None)


# --------------------------------------------------------------------------- device and dtype

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``name``, else ``LOOPGATE_DEVICE``, else auto (cuda → mps → cpu)."""
    if isinstance(name, torch.device):
        return name
    wanted = (name or os.environ.get("LOOPGATE_DEVICE") or "auto").strip().lower()
    if wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError:
        raise DeviceError(f"device {wanted!r} is not one torch knows; use auto, cpu, cuda, cuda:N or mps "
                          "(LOOPGATE_DEVICE or --device)") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise DeviceError(f"device {wanted!r} is not available on this machine (torch {torch.__version__} sees "
                          f"{'a GPU' if torch.cuda.is_available() else 'no GPU'}); use auto or cpu "
                          "(LOOPGATE_DEVICE or --device)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {wanted!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def resolve_dtype(name: str | torch.dtype | None = None, device: torch.device | None = None) -> torch.dtype:
    """The weights' dtype: ``name``, else ``LOOPGATE_DTYPE``, else auto (bf16 on a GPU that supports it,
    float32 elsewhere — CPUs and older GPUs run bf16 matmuls slowly or not at all)."""
    if isinstance(name, torch.dtype):
        return name
    wanted = (name or os.environ.get("LOOPGATE_DTYPE") or "auto").strip().lower()
    if wanted == "auto":
        device = device or resolve_device()
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if wanted not in _DTYPES:
        raise DeviceError(f"dtype {wanted!r} is not one Loopgate loads weights in; use auto, float32, bfloat16 "
                          "or float16 (LOOPGATE_DTYPE or --dtype)")
    return _DTYPES[wanted]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` → ``"bfloat16"``: how records name a dtype."""
    return str(dtype).removeprefix("torch.")


def model_placement(model: torch.nn.Module) -> dict[str, str]:
    """Where a loaded model runs and in which dtype: ``{"device": "cuda", "dtype": "bfloat16"}`` (records)."""
    p = next(model.parameters())
    devices = {d.type for d in (getattr(model, "hf_device_map", None) or {}).values() if isinstance(d, torch.device)}
    return {"device": p.device.type if len(devices) <= 1 else "+".join(sorted(devices)), "dtype": dtype_name(p.dtype)}


SPREAD_OVER_SHARE = 0.8  # weights above this share of a GPU's free memory are spread with accelerate


def device_map_for(device: torch.device, weight_bytes: int, free_bytes: int | None, wanted: str = ""
                   ) -> str | dict[str, Any] | None:
    """Where ``from_pretrained`` puts the weights: straight onto ``device``, or spread over the GPUs (and the CPU)
    by accelerate (``"auto"``) when they take more than ``SPREAD_OVER_SHARE`` of the GPU's free memory.

    ``wanted`` is ``LOOPGATE_DEVICE_MAP``: ``auto`` always spreads (on the CPU too, where accelerate keeps every
    layer on the CPU behind its hooks: the path a multi-GPU load takes, testable without GPUs), ``single`` never
    does. None means transformers' own plain CPU load.
    """
    wanted = wanted.strip().lower()
    if wanted not in ("", "auto", "single"):
        raise DeviceError(f"LOOPGATE_DEVICE_MAP={wanted!r}: use auto (spread with accelerate) or single (one device)")
    if wanted == "auto":
        return "auto"
    if device.type == "cpu":
        return None
    if device.type == "cuda" and wanted != "single" and free_bytes is not None and \
            weight_bytes > SPREAD_OVER_SHARE * free_bytes:
        return "auto"
    return {"": device}


def _device_map(device: torch.device, shapes: dict[Path, dict[str, tuple[int, ...]]], dtype: torch.dtype
                ) -> str | dict[str, Any] | None:
    numel = sum(math.prod(shape) for tensors in shapes.values() for shape in tensors.values())
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    return device_map_for(device, numel * dtype.itemsize, free, os.environ.get("LOOPGATE_DEVICE_MAP", ""))


@dataclass
class LoadedModel:
    """A model ready for inference or training, with its tokenizer."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


# set on a tokenizer whose pad token was borrowed from eos in memory (for batching), so that save_model does not
# write it into a derived version: that version's tokenizer must be its parent's, and a pad = eos written into
# it would make training code that masks padding from the loss mask every eos too
BORROWED_PAD = "_loopgate_pad_is_borrowed_eos"


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The directory's tokenizer, padding on the left; without a pad token it pads with eos, in memory only."""
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
        setattr(tok, BORROWED_PAD, True)
    tok.padding_side = "left"
    return tok


def load_model(path: str | Path | ModelRef, adapter: str | Path | None = None, *, trainable: bool = False,
               dtype: str | torch.dtype | None = None, device: str | torch.device | None = None,
               merge: bool | None = None) -> LoadedModel:
    """Load a local HF causal-LM directory (and optionally a PEFT adapter on top), safetensors only.

    ``path`` may be a :class:`ModelRef`. An adapter is merged into the weights in memory when ``merge`` is true
    (default: when ``path`` is a ``ModelRef``, i.e. a version's weights); otherwise the model is a ``PeftModel``
    (e.g. to train the adapter further). The weights load straight onto
    ``device`` in ``dtype`` (defaults: :func:`resolve_device`, :func:`resolve_dtype`), spread over the GPUs with
    accelerate when one is too small for them.

    A truncated weight file, or one whose tensors disagree with config.json, is a ``ModelFileError`` naming
    the file; transformers would raise a bare error for the first and fill a missing tensor with random
    numbers for the second.
    """
    if merge is None:
        merge = isinstance(path, ModelRef)  # a version's weights: one model (to serve, or to train in full)
    ref = model_ref(path, adapter)
    path, adapter = ref.base, ref.adapter
    set_threads()
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    files = model_files(path)  # refuses pickle-only folders before transformers sees them
    headers = {f: safetensors_header(f) for f in files if f.suffix == ".safetensors"}
    check_weights_match_config(Path(path), headers)
    shapes = {f: {name: shape for name, (_, shape) in tensors.items()} for f, tensors in headers.items()}
    kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": True, "dtype": dt}
    device_map = _device_map(dev, shapes, dt)
    if device_map is not None:
        kwargs["device_map"] = device_map
    model: PreTrainedModel
    info: dict[str, Any]
    model, info = AutoModelForCausalLM.from_pretrained(  # type: ignore[misc]  # a (model, info) pair with this flag
        str(path), output_loading_info=True, **kwargs)
    if info.get("missing_keys"):  # what the header check cannot see (a rename it does not know)
        raise ModelFileError(f"{path}: the weights lack {', '.join(sorted(info['missing_keys'])[:3])}; transformers "
                             "would start them from random numbers")
    tok = load_tokenizer(path)
    if adapter is not None:
        from peft import PeftModel

        for f in model_files(adapter):
            if f.suffix == ".safetensors":
                safetensors_shapes(f)
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)  # type: ignore[assignment]  # PeftModel wraps it
        if merge:
            model = model.merge_and_unload()  # type: ignore[operator]  # in memory only
    if not trainable:
        model.eval()
    return LoadedModel(model=model, tokenizer=tok, path=Path(path))


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> Path:
    """Save as a normal HF directory with safetensors weights; the tokenizer as it was loaded (a pad token
    :func:`load_tokenizer` borrowed from eos is not written)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    save_tokenizer(tokenizer, out)
    return out


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, path: str | Path) -> None:
    """Save the tokenizer as it was loaded: a pad token :func:`load_tokenizer` borrowed from eos is not written
    (an adapter version's folder keeps a tokenizer too, so every derived version goes through here)."""
    if getattr(tokenizer, BORROWED_PAD, False):  # the parent had no pad token: neither does the derived version
        tokenizer.pad_token = None
        try:
            tokenizer.save_pretrained(str(path))
        finally:
            tokenizer.pad_token = tokenizer.eos_token
    else:
        tokenizer.save_pretrained(str(path))
