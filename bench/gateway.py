"""Gateway benchmark: dynamic batching against one request at a time, and the gateway's own overhead.

    .venv/bin/python bench/gateway.py [--clients 32] [--requests 4] [--max-tokens 64]

Builds a throw-away workspace with one untrained tiny model (``TinyConfig`` defaults, ~1.1 M parameters),
starts ``loopgate serve`` twice as a subprocess on 127.0.0.1 (``--max-batch 32``, then ``--max-batch 1``)
and drives it with the official ``openai`` async client from this process: ``--clients`` concurrent clients,
each sending ``--requests`` completions (bounded work, loopback only). Then, at concurrency 1, it compares
the median round trip through the gateway with the median of a direct ``engine.generate`` call on the same
prompt in this process (one thread each, as the server runs).

Prints ``gateway: batched_vs_sequential=R p95_ms=P overhead_vs_direct=O``: R is throughput batched ÷
throughput with one request per batch, P the p95 latency of a batched request at full concurrency, O the
gateway's extra time at concurrency 1 as a fraction of the direct call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = """\
name: gateway-bench
lines:
  base:
    tier: foundation
policy:
  defaults:
    plasticity: {probe_steps: 1}
"""
PROMPTS = [f"request {i:03d}: tell me about item {i * 7 % 100}" for i in range(512)]


def build_workspace(root: Path) -> Path:
    from loopgate import loop
    from loopgate.loop.workspace import Workspace
    from loopgate.models import TinyConfig, build_tiny_model, save_model

    ws, _ = Workspace.init(root / "ws", SPEC)
    model, tok = build_tiny_model(TinyConfig(seed=1))  # seed 1 never emits eos early: every answer is max_tokens long
    loop.register_model(ws, "base", save_model(model, tok, root / "model"))
    assert loop.release(ws, "base@1", actor="bench").released
    ws.store.close()
    return root / "ws"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, ws: Path, max_batch: int) -> None:
        self.port = free_port()
        env = {**os.environ, "LOOPGATE_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loopgate", "serve", "-w", str(ws), "--port", str(self.port), "--no-api-keys",
             "--max-batch", str(max_batch), "--burst", "100000", "--rate", "100000"],
            env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("loopgate serve did not start") from None
                time.sleep(0.2)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def drive(url: str, clients: int, requests: int, max_tokens: int) -> tuple[float, list[float]]:
    """(requests/s, per-request latencies in ms) for ``clients`` concurrent clients × ``requests`` each."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    # warm up: load the model, fill the batcher's history
    await asyncio.gather(*(client.completions.create(model="base", prompt=PROMPTS[i], max_tokens=max_tokens)
                           for i in range(clients)))
    latencies: list[float] = []

    async def one_client(c: int) -> None:
        for k in range(requests):
            t0 = time.perf_counter()
            await client.completions.create(model="base", prompt=PROMPTS[(c * requests + k) % len(PROMPTS)],
                                            max_tokens=max_tokens)
            latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(c) for c in range(clients)))
    wall = time.perf_counter() - t0
    await client.close()
    return clients * requests / wall, latencies


def overhead(url: str, ws: Path, max_tokens: int, n: int) -> tuple[float, float]:
    """(median gateway round trip, median direct engine call) in ms, at concurrency 1, same prompts."""
    from openai import OpenAI

    from loopgate.evaluate.engine import generate
    from loopgate.loop.versions import version_ref
    from loopgate.loop.workspace import Workspace
    from loopgate.models import set_threads
    from loopgate.models.io import load_model

    client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    w = Workspace.open(ws)
    loaded = load_model(version_ref(w, "base@1"))
    set_threads(1)
    gateway_ms, direct_ms = [], []
    for i in range(n):  # interleaved, so both see the same machine load
        prompt = PROMPTS[i % 16]
        t0 = time.perf_counter()
        client.completions.create(model="base", prompt=prompt, max_tokens=max_tokens)
        gateway_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        generate(loaded.model, loaded.tokenizer, [prompt], max_new_tokens=max_tokens, stop=())
        direct_ms.append((time.perf_counter() - t0) * 1000)
    w.store.close()
    return statistics.median(gateway_ms), statistics.median(direct_ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--overhead-requests", type=int, default=40)
    args = ap.parse_args()
    os.environ.setdefault("LOOPGATE_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        ws = build_workspace(Path(tmp))
        results = {}
        for label, max_batch in (("batched", 32), ("sequential", 1)):
            served = Served(ws, max_batch)
            try:
                results[label] = asyncio.run(drive(served.url, args.clients, args.requests, args.max_tokens))
                if label == "batched":
                    gw_ms, direct_ms = overhead(served.url, ws, args.max_tokens, args.overhead_requests)
            finally:
                served.stop()
            rps, lat = results[label]
            print(f"  {label}: {rps:.1f} requests/s, p50 {np.percentile(lat, 50):.0f} ms, "
                  f"p95 {np.percentile(lat, 95):.0f} ms", file=sys.stderr)
        ratio = results["batched"][0] / results["sequential"][0]
        p95 = float(np.percentile(results["batched"][1], 95))
        over = (gw_ms - direct_ms) / direct_ms
        print(f"  concurrency 1: gateway {gw_ms:.1f} ms, direct engine call {direct_ms:.1f} ms", file=sys.stderr)
        print(f"gateway: batched_vs_sequential={ratio:.1f} p95_ms={p95:.0f} overhead_vs_direct={over:.3f}")


if __name__ == "__main__":
    main()
