"""The files of a model folder, read without loading a model: which files count, safetensors headers checked for
completeness, JSON that must be finite, the weight shards an index names."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from loopgate.errors import ModelFileError, UnsafeModelError

# files that make up a model directory; anything else in the folder is ignored on registration
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".jinja")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


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


def context_length(config: Any) -> int | None:
    """The most positions the model takes (``max_position_embeddings``; ``n_positions`` for the GPT-2 family),
    from a config object or a config.json dict; None when it does not say."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        if isinstance(value, int) and positive_int(value):
            return value
    return None


def check_finite(path: Path, data: Any, where: str = "") -> None:
    """Every number in a config file is finite; the error names the key."""
    if isinstance(data, float) and not math.isfinite(data):
        raise ModelFileError(f"{path}: {where or 'the value'} is {data}; a model's config numbers must be finite — "
                             "fix the value (or copy the file again from its source)")
    if isinstance(data, dict):
        for k, v in data.items():
            check_finite(path, v, f"{where}.{k}" if where else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            check_finite(path, v, f"{where}[{i}]")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (ValueError, OSError) as err:
        raise ModelFileError(f"{path}: not valid JSON ({err}); copy the file again from its source") from None


def weight_files(root: Path) -> list[Path]:
    """The files transformers loads a full model from: the shards of the index, or model.safetensors."""
    index = root / SAFE_WEIGHTS_INDEX
    if index.exists():
        data = read_json(index)
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


def positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0

