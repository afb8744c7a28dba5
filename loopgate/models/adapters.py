"""Many LoRA adapters on one loaded base, never merged: peft's named adapters and mixed-adapter batches.

A :class:`SharedBase` holds one base model wrapped as a ``PeftModel``; each adapter version is loaded into it under
its own name (:func:`adapter_name`) and unloaded again (``delete_adapter``) by least-recent use when the adapters
together exceed a byte budget. A batch then names an adapter per row (``"__base__"`` for a row on the base itself)
and peft applies each row's LoRA delta in the same forward pass (peft: "mixed adapter batches"), so answers equal
those of the adapter merged into its own copy of the base, at the cost of one base in memory.

A ``SharedBase`` is not thread-safe: one thread (the gateway's worker for that base, or an evaluation) uses it.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopgate.errors import ModelFileError
from loopgate.models.io import LoadedModel, check_adapter, load_model, model_files, safetensors_header

BASE_ROW = "__base__"  # peft's name for "no adapter" in a mixed batch


def adapter_name(version: str, content_key: str) -> str:
    """A peft adapter name for a version: its id (peft forbids dots; only letters, digits, ``_`` and ``-`` kept)
    and the first 12 hex digits of its content key, so a name can never stand for other weights."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", version)
    return f"{clean}_{hashlib.sha256(content_key.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class AdapterSlot:
    """One adapter to load into a shared base: its peft name and its folder (safetensors, checked on load)."""

    name: str
    path: Path


class SharedBase:
    """One base model and the adapters loaded on it, least recently used first out under ``budget_bytes``."""

    def __init__(self, base: Path, *, budget_bytes: int | None = None, dtype: Any = None, device: Any = None) -> None:
        self.base = Path(base)
        self.budget_bytes = budget_bytes
        loaded: LoadedModel = load_model(self.base, dtype=dtype, device=device)
        self.tokenizer = loaded.tokenizer
        self.model: Any = loaded.model  # a PeftModel once the first adapter is in
        self.sizes: OrderedDict[str, int] = OrderedDict()  # loaded adapter → its bytes, least recently used first
        self.wrapped = False  # a PeftModel yet? (the base becomes one with its first adapter)
        self.loads = 0
        self.unloads = 0
        self._checked: set[AdapterSlot] = set()

    def check(self, slot: AdapterSlot) -> None:
        """Refuse an adapter that is not safetensors, is incomplete, or does not fit this base (once per slot)."""
        if slot not in self._checked:
            _check_adapter_files(slot.path, self.base)
            self._checked.add(slot)

    @property
    def adapter_bytes(self) -> int:
        return sum(self.sizes.values())

    def ensure(self, slots: Sequence[AdapterSlot | None]) -> list[str]:
        """Load every adapter of ``slots`` that is not loaded (evicting least recently used ones not in ``slots``
        while over the budget) and return the batch's per-row adapter names."""
        wanted = {s.name: s for s in slots if s is not None}
        for name in wanted:
            if name in self.sizes:
                self.sizes.move_to_end(name)
        for name, slot in wanted.items():
            if name not in self.sizes:
                self._load(slot, keep=set(wanted))
        self._evict(keep=set(wanted))  # also after a batch that went over the budget: the next one brings it back
        return [BASE_ROW if s is None else s.name for s in slots]

    def activate(self, slot: AdapterSlot) -> None:
        """Load ``slot`` if needed and make it the adapter every row uses (for code that passes no per-row names,
        such as the evaluation engine)."""
        self.ensure([slot])
        self.model.set_adapter(slot.name)
        self.model.requires_grad_(False)

    def _load(self, slot: AdapterSlot, keep: set[str]) -> None:
        self.check(slot)
        from peft import PeftModel

        with warnings.catch_warnings():  # peft warns about the adapter's recorded base path; the check above is ours
            warnings.simplefilter("ignore")
            if not self.wrapped:  # not hasattr(load_adapter): transformers' models have one of their own
                self.model = PeftModel.from_pretrained(self.model, str(slot.path), adapter_name=slot.name)
                self.wrapped = True
            else:
                self.model.load_adapter(str(slot.path), adapter_name=slot.name)
        self.model.eval()
        self.model.requires_grad_(False)  # served, never trained: peft marks the active adapter trainable
        size = sum(p.numel() * p.element_size() for n, p in self.model.named_parameters() if f".{slot.name}." in n)
        self.sizes[slot.name] = size
        self.loads += 1
        self._evict(keep)

    def _evict(self, keep: set[str]) -> None:
        """Unload least recently used adapters outside ``keep`` until the rest fit the budget (a batch's own adapters
        always stay: a budget smaller than one batch's adapters is exceeded until that batch is done)."""
        while self.budget_bytes is not None and self.adapter_bytes > self.budget_bytes:
            victim = next((n for n in self.sizes if n not in keep), None)
            if victim is None:
                return
            self.model.delete_adapter(victim)
            # peft makes the adapter it falls back to the active one, marked trainable: this one is served
            self.model.requires_grad_(False)
            del self.sizes[victim]
            self.unloads += 1
        active = self.model.active_adapter
        if self.sizes and active not in self.sizes:  # peft keeps pointing at a deleted adapter otherwise
            self.model.set_adapter(next(iter(self.sizes)))
            self.model.requires_grad_(False)


def _check_adapter_files(adapter: Path, base: Path) -> None:
    """Safetensors only, complete files, and an adapter that fits this base (:func:`check_adapter`)."""
    headers = {f: safetensors_header(f) for f in model_files(adapter) if f.suffix == ".safetensors"}
    if not (adapter / "adapter_config.json").is_file():
        raise ModelFileError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json)")
    check_adapter(adapter, base, headers)
