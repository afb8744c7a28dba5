"""Where training runs and in which precision (``LOOPGATE_DEVICE`` / ``LOOPGATE_DTYPE``, default: the GPU in bf16
where it supports it, else the CPU in float32).

The precision scheme, and why:

- **Full fine-tuning** (``sft``, ``pretrain``, full ``dpo``): float32 master weights and optimizer state, the
  forward and backward passes under ``torch.autocast`` in bf16. Pure bf16 weights would lose every update smaller
  than 2⁻⁸ of a weight (bf16 keeps 8 mantissa bits): at the small learning rates of fine-tuning most AdamW steps
  would round away. Autocast gets bf16's matmul speed and memory for activations; the weights cost 4 bytes each
  (+8 for AdamW's moments) either way.
- **LoRA** (``lora``, ``dpo`` with ``lora``): the frozen base is loaded in bf16 (half the memory, and nothing of
  it is ever updated, so nothing can round away), the adapter's own weights stay float32 (peft's default
  ``autocast_adapter_dtype``) and the passes run under autocast — the usual QLoRA-era recipe without the
  quantisation.
- **float32** (the CPU default): no autocast; the same parent, data and seed give bit-identical weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from loopgate.models import dtype_name, resolve_device, resolve_dtype


@dataclass(frozen=True)
class Precision:
    """Training placement: the device, the dtype weights are loaded in, and the autocast dtype (None: off)."""

    device: torch.device
    load_dtype: torch.dtype
    compute_dtype: torch.dtype
    scheme: str

    @property
    def autocast(self) -> torch.dtype | None:
        return self.compute_dtype if self.compute_dtype != torch.float32 else None

    @contextlib.contextmanager
    def forward(self) -> Iterator[None]:
        """The context every training forward (and its loss) runs in."""
        if self.autocast is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.autocast):
            yield

    def record(self) -> dict[str, str]:
        """What a run's provenance says about where and how it was trained."""
        return {"device": self.device.type, "dtype": dtype_name(self.compute_dtype), "precision": self.scheme}


def training_precision(*, frozen_base: bool) -> Precision:
    """The placement for a full fine-tune (``frozen_base=False``) or a LoRA update (``True``); see the module doc."""
    device = resolve_device()
    want = resolve_dtype(None, device)
    if want == torch.float32:
        return Precision(device, torch.float32, torch.float32, "float32")
    if frozen_base:
        return Precision(device, want, want, f"{dtype_name(want)} frozen base, float32 adapter, autocast")
    return Precision(device, torch.float32, want, f"float32 master weights, {dtype_name(want)} autocast")
