"""Where a model runs: the device and dtype (arguments, then ``LOOPGATE_*`` variables, then auto), torch's threads,
and whether weights go onto one device or are spread with accelerate."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from loopgate.errors import DeviceError


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (env ``LOOPGATE_THREADS``, default 1).

    On a shared 2-core machine more than one thread made small ops much slower (FIELD-NOTES), so one
    thread is the default and more is opt-in.
    """
    n = n or int(os.environ.get("LOOPGATE_THREADS", "1"))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n



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


def weights_device_map(device: torch.device, shapes: dict[Path, dict[str, tuple[int, ...]]], dtype: torch.dtype
                ) -> str | dict[str, Any] | None:
    numel = sum(math.prod(shape) for tensors in shapes.values() for shape in tensors.values())
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    return device_map_for(device, numel * dtype.itemsize, free, os.environ.get("LOOPGATE_DEVICE_MAP", ""))
