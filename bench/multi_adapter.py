"""Many adapter lines on one base (#22): memory and mixed-adapter throughput against the per-version path.

    .venv/bin/python bench/multi_adapter.py [--lines 100] [--clients 32] [--requests 2] [--max-tokens 8]

Builds a throw-away workspace: one untrained tiny base (``--hidden`` wide, ``--layers`` deep) released on line
``base``, and ``--lines`` LoRA adapter lines on it. Each adapter is a real peft adapter (rank ``--rank`` on every
linear layer, saved as safetensors by ``save_pretrained``) with distinct random-but-deterministic weights (seed =
its index; peft's ``init_lora_weights=False``), not trained: what is measured is serving, and random B matrices
make every line answer differently. Each is registered and released through the gates like any version.

Then it starts ``loopgate serve`` twice as a subprocess on 127.0.0.1 and drives each with the official ``openai``
async client, ``--clients`` concurrent clients × ``--requests`` completions each, line chosen round-robin:

- shared: ``--adapter-memory 1024`` — all adapter lines on one loaded base, mixed-adapter batches;
- per-version: ``--adapter-memory 0 --max-loaded 4`` — the path before #22: each adapter merged into its own
  copy of the base, least recently used copies unloaded.

Both first answer one request per line (warm-up; the shared server then holds all adapters), then the timed
requests. Resident memory (VmRSS) of the shared server is read before its first request and after the run.
Every answer of the shared server must equal the per-version server's answer to the same request (each
adapter evaluated alone, merged); the bench exits 1 otherwise.

Prints ``multi_adapter: lines=N rss_mib=R budget_mib=B throughput_ratio=X identical=True``: R is the shared
server's RSS growth from idle to serving every line, B = 1.2 × (base as served + (N − 1) × adapter bytes), where
the base as served is the RSS growth from idle to answering a full batch (``--clients`` requests) on one
adapter line (weights, that adapter, and the runtime and batch memory torch/transformers/peft allocate once);
X the shared server's requests/s ÷ the per-version server's on the same requests. It also prints what the other
N − 1 adapters added, as a multiple of their tensors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICY = """\
policy:
  defaults:
    plasticity: {probe_steps: 1}
    cost: {max_latency_p95_ratio: null, max_cost_per_1k_ratio: null, max_param_growth: null,
           max_mean_output_length_ratio: null}
"""
MIB = 2**20


def line_name(i: int) -> str:
    return f"app{i:03d}"


def build_workspace(root: Path, args: argparse.Namespace) -> tuple[Path, int, int]:
    """The workspace folder, the base's bytes and one adapter's bytes (float32 weights as loaded)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from loopgate import loop
    from loopgate.loop.workspace import Workspace
    from loopgate.models import TinyConfig, build_tiny_model, load_model, save_model

    spec = "name: multi-adapter-bench\nlines:\n  base:\n    tier: foundation\n" + "".join(
        f"  {line_name(i)}:\n    tier: industrial\n    parent: base\n" for i in range(args.lines)) + POLICY
    ws, _ = Workspace.init(root / "ws", spec)
    model, tok = build_tiny_model(TinyConfig(seed=1, hidden_size=args.hidden, num_layers=args.layers,
                                             num_heads=4, intermediate_size=4 * args.hidden))
    base_dir = save_model(model, tok, root / "base")
    base_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    base = loop.register_model(ws, "base", base_dir).id
    assert loop.release(ws, base, actor="bench", propagate=False).released
    adapter_bytes = 0
    t0 = time.perf_counter()
    for i in range(args.lines):
        torch.manual_seed(i)
        peft_model = get_peft_model(load_model(base_dir).model, LoraConfig(
            r=args.rank, target_modules="all-linear", init_lora_weights=False))
        adapter_bytes = sum(p.numel() * p.element_size() for n, p in peft_model.named_parameters() if "lora_" in n)
        peft_model.save_pretrained(str(root / f"adapter-{i}"))
        v = loop.register_model(ws, line_name(i), root / f"adapter-{i}", base=base).id
        out = loop.release(ws, v, actor="bench", propagate=False)
        assert out.released, out.decision.gates
    print(f"  built {args.lines} adapter lines in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    ws.store.close()
    return root / "ws", base_bytes, adapter_bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """``loopgate serve`` in a subprocess (the real CLI), until it accepts connections."""

    def __init__(self, ws: Path, *extra: str) -> None:
        self.port = free_port()
        env = {**os.environ, "LOOPGATE_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loopgate", "serve", "-w", str(ws), "--port", str(self.port), "--no-api-keys",
             "--max-batch", "32", "--burst", "100000", "--rate", "100000", "--timeout", "600", *extra],
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

    def rss(self) -> int:
        """Resident memory of the server process, in bytes (Linux /proc)."""
        for row in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc (Linux only)")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def requests_for(args: argparse.Namespace) -> list[list[tuple[str, str]]]:
    """Per client, its (line, prompt) requests: lines round-robin, so concurrent requests name different lines."""
    return [[(line_name((c * args.requests + k) % args.lines), f"request {c}-{k}: item {(c * 7 + k) % 50}")
             for k in range(args.requests)] for c in range(args.clients)]


async def first_line(url: str, args: argparse.Namespace) -> None:
    """``--clients`` concurrent requests on the first line: the shared base loads with that line's adapter and
    answers a full batch, so the batch's working memory is part of the base as served, not of the adapters."""
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600) as client:
        await asyncio.gather(*(client.completions.create(model=line_name(0), prompt=f"warm up {c}",
                                                         max_tokens=args.max_tokens) for c in range(args.clients)))


async def drive(url: str, args: argparse.Namespace) -> tuple[float, dict[tuple[str, str], str]]:
    """(requests/s of the timed phase, answer per (line, prompt)) after one warm-up request per line."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)

    async def ask(line: str, prompt: str) -> str:
        r = await client.completions.create(model=line, prompt=prompt, max_tokens=args.max_tokens)
        return r.choices[0].text

    sem = asyncio.Semaphore(args.clients)

    async def warm(i: int) -> None:
        async with sem:
            await ask(line_name(i), "warm up")

    await asyncio.gather(*(warm(i) for i in range(args.lines)))
    answers: dict[tuple[str, str], str] = {}

    async def one_client(todo: list[tuple[str, str]]) -> None:
        for line, prompt in todo:
            answers[(line, prompt)] = await ask(line, prompt)

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(todo) for todo in requests_for(args)))
    wall = time.perf_counter() - t0
    await client.close()
    return args.clients * args.requests / wall, answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=100)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=2, help="timed requests per client")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rank", type=int, default=16)
    args = ap.parse_args()
    os.environ.setdefault("LOOPGATE_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ws, base_bytes, adapter_bytes = build_workspace(Path(tmp), args)
        shared = Served(ws, "--adapter-memory", "1024")
        try:
            idle = shared.rss()
            asyncio.run(first_line(shared.url, args))
            first = shared.rss()  # the base as served: its weights, one adapter, torch's and peft's runtime
            shared_rps, shared_answers = asyncio.run(drive(shared.url, args))
            grown, added = shared.rss() - idle, shared.rss() - first
        finally:
            shared.stop()
        per_version = Served(ws, "--adapter-memory", "0", "--max-loaded", "4")
        try:
            alone_rps, alone_answers = asyncio.run(drive(per_version.url, args))
        finally:
            per_version.stop()
    # "base" is the base as served (RSS after a full batch on one adapter line), not its bare weights: the runtime
    # torch, transformers and peft allocate on the first batches is paid once, whatever the line count
    served_base = first - idle
    budget = 1.2 * (served_base + (args.lines - 1) * adapter_bytes)
    differ = [k for k, v in shared_answers.items() if alone_answers.get(k) != v]
    print(f"  base {base_bytes / MIB:.1f} MiB of weights, {served_base / MIB:.0f} MiB served (a full batch on one "
          f"adapter line); "
          f"adapter {adapter_bytes / MIB:.2f} MiB; shared server RSS idle {idle / MIB:.0f} MiB, "
          f"+{grown / MIB:.0f} MiB serving {args.lines} lines; the other {args.lines - 1} adapters added "
          f"{added / MIB:.0f} MiB = {added / max(1, (args.lines - 1) * adapter_bytes):.2f} × their tensors",
          file=sys.stderr)
    print(f"  shared base: {shared_rps:.1f} requests/s; per-version (merged copies, --max-loaded 4): "
          f"{alone_rps:.1f} requests/s; {len(differ)} of {len(shared_answers)} answers differ", file=sys.stderr)
    print(f"  wall time {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    print(f"multi_adapter: lines={args.lines} rss_mib={grown / MIB:.0f} budget_mib={budget / MIB:.0f} "
          f"throughput_ratio={shared_rps / alone_rps:.1f} identical={not differ}")
    if differ or grown > budget:
        sys.exit(1)


if __name__ == "__main__":
    main()
