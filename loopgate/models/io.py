"""Model folders in and out: the checks a folder passes before it is registered, and re-exports of the modules
that load, save and place models (``files``, ``config_check``, ``adapter_check``, ``device``, ``loading``).

Safetensors only, offline only, never pickle. Import from here or from :mod:`loopgate.models`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from loopgate.errors import LoopgateError, ModelFileError
from loopgate.models.adapter_check import check_adapter
from loopgate.models.config_check import check_weights_match_config
from loopgate.models.device import (
    SPREAD_OVER_SHARE,
    device_map_for,
    dtype_name,
    model_placement,
    resolve_device,
    resolve_dtype,
    set_threads,
)
from loopgate.models.files import (
    CONFIG_FILES,
    FLOAT_DTYPES,
    MODEL_FILE_SUFFIXES,
    PICKLE_SUFFIXES,
    SAFE_WEIGHTS,
    SAFE_WEIGHTS_INDEX,
    check_finite,
    context_length,
    is_adapter_dir,
    model_files,
    read_json,
    safetensors_header,
    safetensors_shapes,
)
from loopgate.models.loading import (
    BORROWED_PAD,
    LoadedModel,
    ModelRef,
    load_model,
    load_tokenizer,
    model_ref,
    save_model,
    save_tokenizer,
)

__all__ = [
    "BORROWED_PAD", "CONFIG_FILES", "FLOAT_DTYPES", "MODEL_FILE_SUFFIXES", "PICKLE_SUFFIXES", "PROBE_TEXT",
    "SAFE_WEIGHTS", "SAFE_WEIGHTS_INDEX", "SPREAD_OVER_SHARE", "LoadedModel", "ModelRef", "check_adapter",
    "check_forward", "check_model_dir", "check_weights_match_config", "context_length", "device_map_for",
    "dtype_name", "is_adapter_dir", "load_model", "load_tokenizer", "model_files", "model_placement", "model_ref",
    "resolve_device", "resolve_dtype", "safetensors_header", "safetensors_shapes", "save_model", "save_tokenizer",
    "set_threads",
]

PROBE_TEXT = "Hello, world! 1 2 3"


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
            data = read_json(f)
            if f.name in CONFIG_FILES:
                check_finite(f, data)
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

