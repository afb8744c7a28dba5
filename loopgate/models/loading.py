"""Loading and saving model directories: safetensors only, offline only, never pickle."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers import utils as _hf_utils

from loopgate.errors import ModelFileError, UnsafeModelError
from loopgate.models.config_check import check_weights_match_config
from loopgate.models.device import resolve_device, resolve_dtype, set_threads, weights_device_map
from loopgate.models.files import model_files, safetensors_header, safetensors_shapes

# transformers draws a progress bar per shard load/save; Loopgate shows its own progress instead
_hf_utils.logging.disable_progress_bar()
# peft/trl still call transformers' deprecated gradient-checkpointing names; the warning is theirs to fix
warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated", category=FutureWarning)
_hf_utils.logging.set_verbosity_error()


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
    device_map = weights_device_map(dev, shapes, dt)
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
