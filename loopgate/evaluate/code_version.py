"""The engine's code version: a hash of the source files that decide what an evaluation records and of the
libraries that run the model; part of every evaluation cache key."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from loopgate.hashing import sha256_bytes, sha256_json

# The source files whose code decides what an evaluation records, relative to the ``loopgate`` package:
# this engine (batching, generation, choice scoring, suite evaluation, cost figures: engine.py and the modules it
# re-exports), the scorers (what counts as correct or
# refused), suites and the JSONL reader (how rows are parsed, which spec fields count), metrics (the
# stored confidence interval) and model loading (dtype, tokenizer padding, adapter attachment). Left out:
# the runner and the cache, which route work but compute nothing, and records, whose changed schema fails
# validation on read (a miss). The listed files' bytes and the versions of the libraries that run the
# model make ``engine_version()``, part of every cache key: a hand-bumped number was once forgotten
# (choice scoring changed under "1"); a hash cannot be. An edit here costs a cache miss; a file left out
# risks a stale hit.
ENGINE_SOURCES = (
    "evaluate/engine.py",
    "evaluate/code_version.py",
    "evaluate/sizing.py",
    "evaluate/costs.py",
    "evaluate/generation.py",
    "evaluate/choice.py",
    "evaluate/suite_eval.py",
    "models/chat.py",
    "evaluate/scorers.py",
    "evaluate/suites.py",
    "evaluate/metrics.py",
    "jsonl.py",
    "models/io.py",
    "models/files.py",
    "models/config_check.py",
    "models/adapter_check.py",
    "models/device.py",
    "models/loading.py",
    "evaluate/graders.py",
    "evaluate/grading.py",
    "evaluate/classifier.py",
    "evaluate/perplexity.py",
    "evaluate/python_scorer.py",
    "evaluate/lmeval_suite.py",
    "evaluate/lmeval_run.py",
    "evaluate/lmeval_import.py",
)
# kernels, generate() and tokenisation live in these; a new release may change an output
ENGINE_LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "lm_eval")
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def code_hash(root: Path, sources: Sequence[str], libraries: Sequence[str] = ()) -> str:
    """sha256 over each source file's relative path and bytes under ``root`` and each library's version."""
    versions: dict[str, str] = {}
    for name in libraries:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return sha256_json({"sources": {s: sha256_bytes((root / s).read_bytes()) for s in sources},
                        "libraries": versions})


@functools.cache
def engine_version() -> str:
    """The hash of the code that decides an evaluation's result (``ENGINE_SOURCES``), computed once per process."""
    return code_hash(_PACKAGE_ROOT, ENGINE_SOURCES, ENGINE_LIBRARIES)
