"""Load and save Hugging Face causal LMs (safetensors only) and build the tiny built-in model family."""

from loopgate.models.io import (
    LoadedModel,
    ModelRef,
    check_model_dir,
    dtype_name,
    load_model,
    load_tokenizer,
    model_files,
    model_placement,
    model_ref,
    resolve_device,
    resolve_dtype,
    safetensors_shapes,
    save_model,
    save_tokenizer,
    set_threads,
)
from loopgate.models.tiny import TinyConfig, build_tiny_model, char_tokenizer

__all__ = [
    "LoadedModel",
    "ModelRef",
    "TinyConfig",
    "build_tiny_model",
    "char_tokenizer",
    "check_model_dir",
    "dtype_name",
    "load_model",
    "load_tokenizer",
    "model_files",
    "model_placement",
    "model_ref",
    "resolve_device",
    "resolve_dtype",
    "safetensors_shapes",
    "save_model",
    "save_tokenizer",
    "set_threads",
]
