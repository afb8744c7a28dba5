"""The batched inference engine: one loaded HF causal LM (or base + PEFT adapter) × one suite → an Evaluation.

How it is fast on a CPU:
- prompts are tokenised once and sorted by length, so a batch holds prompts of similar length and
  little compute is spent on padding (results are put back in suite order);
- generation is greedy ``model.generate`` with left padding and the KV cache, and a batch stops as soon
  as every row has produced a stop string or eos (``_StopOnStrings``, checked on token ids on the device);
- multiple choice is one forward pass per batch, and the choices of a prompt share it: the prompt is
  laid out once, followed by every choice, with an attention mask that lets each choice see only the
  prompt and itself; a choice scores the summed log-probability of its tokens (argmax wins).

And on a GPU: the model runs where it was loaded (``loopgate.models.load_model``: device and dtype), batches
are sized from the device's free memory (up to ``max_gpu_batch_size`` rows; a batch that still runs out of
memory is split in two and retried), stop strings never make the GPU wait for a host-side decode, and peak
memory is the device's (``torch.cuda.max_memory_allocated``) instead of the process RSS.

The parts, one module each: ``sizing`` (settings, context room, batch sizes), ``generation``, ``choice``
(multiple choice), ``suite_eval`` (a suite → an Evaluation), ``costs`` (latency and memory figures) and
``code_version`` (the hash in every cache key). Import from here.

About latency: rows are served in batches, so a row's ``latency_ms`` is the *amortised* cost of its batch
(batch wall time ÷ rows in the batch), which is what throughput costs per request. A request that has to
wait for its whole batch sees the batch wall time instead; those figures are reported separately as
``batch_latency_p50_ms`` / ``batch_latency_p95_ms``. Compare latencies only between evaluations made with
the same batch size and thread count.
"""

from __future__ import annotations

from loopgate.evaluate.choice import ChoiceScores, choice_loglikelihoods
from loopgate.evaluate.code_version import ENGINE_LIBRARIES, ENGINE_SOURCES, code_hash, engine_version
from loopgate.evaluate.costs import peak_memory_mb, peak_rss_mb
from loopgate.evaluate.generation import Generation, _StopOnStrings, _truncate, generate
from loopgate.evaluate.sizing import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_GPU_BATCH_SIZE,
    DEFAULT_MEMORY_BUDGET_MB,
    GPU_MEMORY_SHARE,
    EngineConfig,
    ProgressFn,
    auto_batch_size,
    gpu_budget_mb,
    model_profile,
    prompt_room,
)
from loopgate.evaluate.sizing import pad_id as _pad_id
from loopgate.evaluate.suite_eval import evaluate_suite

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE", "DEFAULT_MAX_GPU_BATCH_SIZE", "DEFAULT_MEMORY_BUDGET_MB", "ENGINE_LIBRARIES",
    "ENGINE_SOURCES", "GPU_MEMORY_SHARE", "ChoiceScores", "EngineConfig", "Generation", "ProgressFn", "_StopOnStrings",
    "_pad_id", "_truncate", "auto_batch_size", "choice_loglikelihoods", "code_hash", "engine_version", "evaluate_suite",
    "generate", "gpu_budget_mb", "model_profile", "peak_memory_mb", "peak_rss_mb", "prompt_room",
]
