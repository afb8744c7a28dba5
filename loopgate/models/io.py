"""Loading and saving model directories: safetensors only, offline only, never pickle."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers import utils as _hf_utils

from loopgate.errors import UnsafeModelError

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


@dataclass
class LoadedModel:
    """A model ready for inference or training, with its tokenizer."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(path: str | Path, adapter: str | Path | None = None, *, trainable: bool = False,
               dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a local HF causal-LM directory (and optionally a PEFT adapter on top), safetensors only."""
    set_threads()
    model_files(path)  # refuses pickle-only folders before transformers sees them
    kwargs: dict[str, Any] = {"local_files_only": True, "use_safetensors": True, "dtype": dtype}
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    tok = load_tokenizer(path)
    if adapter is not None:
        from peft import PeftModel

        model_files(adapter)
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)  # type: ignore[assignment]  # PeftModel wraps it
    if not trainable:
        model.eval()
    return LoadedModel(model=model, tokenizer=tok, path=Path(path))


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> Path:
    """Save as a normal HF directory with safetensors weights."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out
