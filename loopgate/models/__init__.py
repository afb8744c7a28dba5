"""Load and save Hugging Face causal LMs (safetensors only) and build the tiny built-in model family."""

from loopgate.models.io import (
    LoadedModel,
    check_model_dir,
    load_model,
    load_tokenizer,
    model_files,
    safetensors_shapes,
    save_model,
    set_threads,
)
from loopgate.models.tiny import TinyConfig, build_tiny_model, char_tokenizer

__all__ = [
    "LoadedModel",
    "TinyConfig",
    "build_tiny_model",
    "char_tokenizer",
    "check_model_dir",
    "load_model",
    "load_tokenizer",
    "model_files",
    "safetensors_shapes",
    "save_model",
    "set_threads",
]
