"""Cost and memory figures of a suite's run: peak memory (device or process), latency percentiles, throughput."""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence

import numpy as np
import torch

from loopgate.records import ExampleResult


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: the device's allocated peak on a GPU (since the last reset), the process RSS else."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (``getrusage``; Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024



def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else 0.0


def cost_metrics(examples: Sequence[ExampleResult], batch_ms: Sequence[float], gen_s: float, wall_s: float,
                 rss_before: float, device: torch.device) -> dict[str, float]:
    """Latency, throughput and memory figures of a generation or safety suite's run (``gen_s``: generating only)."""
    lat = [e.latency_ms or 0.0 for e in examples]
    toks = [e.output_tokens or 0 for e in examples]
    per_tok = [ms / max(t, 1) for ms, t in zip(lat, toks, strict=True)]
    peak = peak_memory_mb(device)
    return {
        "latency_p50_ms": percentile(lat, 50),
        "latency_p95_ms": percentile(lat, 95),
        "latency_per_token_p50_ms": percentile(per_tok, 50),
        "latency_per_token_p95_ms": percentile(per_tok, 95),
        "batch_latency_p50_ms": percentile(batch_ms, 50),
        "batch_latency_p95_ms": percentile(batch_ms, 95),
        "tokens_per_s": sum(toks) / gen_s if gen_s > 0 else 0.0,
        "mean_output_tokens": float(np.mean(toks)) if toks else 0.0,
        # the process's peak resident memory (model + runtime + this suite's batches): what a server needs; on a
        # GPU the device's peak allocated memory (weights + this suite's batches)
        "peak_memory_mb": peak,
        "peak_memory_growth_mb": max(0.0, peak - rss_before),
        "wall_s": wall_s,
        "items_per_s": len(examples) / wall_s if wall_s > 0 else 0.0,
    }



def choice_cost_metrics(examples: Sequence[ExampleResult], batch_ms: Sequence[float], wall_s: float,
                        rss_before: float, device: torch.device) -> dict[str, float]:
    """Latency, throughput and memory figures of a multiple-choice suite's run (no tokens are generated)."""
    lat = [e.latency_ms or 0.0 for e in examples]
    return {
        "latency_p50_ms": percentile(lat, 50), "latency_p95_ms": percentile(lat, 95),
        "batch_latency_p50_ms": percentile(batch_ms, 50), "batch_latency_p95_ms": percentile(batch_ms, 95),
        "peak_memory_mb": peak_memory_mb(device),
        "peak_memory_growth_mb": max(0.0, peak_memory_mb(device) - rss_before),
        "wall_s": wall_s, "items_per_s": len(examples) / wall_s if wall_s > 0 else 0.0,
    }
