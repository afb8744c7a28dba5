"""Load and save Hugging Face causal LMs (safetensors only) and build the tiny built-in model family."""

from loopgate.models.io import (
    LoadedModel,
    load_model,
    load_tokenizer,
    model_files,
    save_model,
    set_threads,
)
from loopgate.models.tiny import TinyConfig, build_tiny_model, char_tokenizer

__all__ = [
    "LoadedModel",
    "TinyConfig",
    "build_tiny_model",
    "char_tokenizer",
    "load_model",
    "load_tokenizer",
    "model_files",
    "save_model",
    "set_threads",
]
