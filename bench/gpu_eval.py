"""Loopgate's engine on a GPU against a plain transformers batched ``generate`` (issue #11's table).

A randomly initialised Llama of about 0.3 B parameters (hidden 1024, 24 layers, vocabulary 32 000), built here —
nothing is downloaded — runs 512 greedy generations of 32 new tokens in bf16:

- ``plain``: ``model.generate`` on left-padded batches of 64, 256 and 512 prompts (the best is the reference);
- ``engine``: ``loopgate.evaluate.engine.evaluate_suite`` on the same model and prompts (its batch size chosen
  from the free device memory);
- ``continuous``: transformers' continuous batching (``model.generate_batch``), the second candidate.

Prints one line per path and ``gpu_eval: vs_plain=R`` (engine items/s ÷ the best plain items/s; the issue asks
R ≥ 0.8). Without a CUDA device it prints that nothing was measured and exits 0. ``--cpu`` runs the same comparison
on the CPU in float32 with a 0.06 B model (the CPU's figures, not the issue's); ``--smoke`` runs every path on the
CPU with a tiny model and a few prompts, to check the script itself (its figures mean nothing).

    .venv/bin/python bench/gpu_eval.py [--cpu | --smoke]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loopgate.evaluate.engine import EngineConfig, evaluate_suite  # noqa: E402
from loopgate.evaluate.suites import load_suite  # noqa: E402
from loopgate.spec import SuiteSpec  # noqa: E402

FULL = {"hidden": 1024, "layers": 24, "heads": 16, "inter": 2816, "vocab": 32000, "prompts": 512, "new": 32,
        "batches": (64, 256, 512)}
# the same comparison on this machine's CPU, with a model a CPU runs in minutes (its figures are the CPU's)
CPU = {"hidden": 512, "layers": 8, "heads": 8, "inter": 1408, "vocab": 32000, "prompts": 128, "new": 16,
       "batches": (16, 64, 128)}
SMOKE = {"hidden": 32, "layers": 2, "heads": 2, "inter": 64, "vocab": 500, "prompts": 24, "new": 4,
         "batches": (8, 24)}


def word_tokenizer(vocab: int) -> Any:
    """A word-level tokenizer of ``vocab`` synthetic words ``w0 … wN`` (one token each), built in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3} | {f"w{i}": i + 4 for i in range(vocab - 4)}
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side="left")


def random_llama(shape: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=shape["vocab"], hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                      num_attention_heads=shape["heads"], num_key_value_heads=shape["heads"],
                      intermediate_size=shape["inter"], max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    model.generation_config.pad_token_id = 0
    return model


def prompts(n: int, vocab: int) -> list[str]:
    rng = random.Random(0)
    return [" ".join(f"w{rng.randrange(vocab - 4)}" for _ in range(rng.randint(8, 24))) for _ in range(n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def plain(model: Any, tok: Any, texts: list[str], batch: int, new: int, device: torch.device) -> float:
    """items/s of a plain batched greedy ``generate`` (left padding), batches in the given order."""
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        enc = tok(texts[i:i + batch], return_tensors="pt", padding=True).to(device)
        model.generate(**enc, max_new_tokens=new, do_sample=False, num_beams=1, pad_token_id=0)
    sync(device)
    return len(texts) / (time.perf_counter() - t0)


def engine(model: Any, tok: Any, texts: list[str], new: int, folder: Path) -> tuple[float, float]:
    """(items/s, peak memory MB) of Loopgate's engine on the same prompts (no stop strings, greedy)."""
    path = folder / "suite.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "prompt": t, "target": "x"}) + "\n"
                            for i, t in enumerate(texts)))
    suite = load_suite("bench", SuiteSpec(path=str(path), max_new_tokens=new, stop=[]))
    ev = evaluate_suite(model, tok, suite, version="bench", config=EngineConfig())
    return ev.metrics["items_per_s"], ev.metrics["peak_memory_mb"]


def continuous(model: Any, tok: Any, texts: list[str], new: int, device: torch.device, smoke: bool) -> str:
    """items/s of transformers' continuous batching (the second of two runs: the first captures its graphs and
    warms its kernels), or why it could not run here. Its paged cache is sized by transformers from the free
    device memory; the smoke run gives it a small fixed one (its CPU default takes seconds to allocate)."""
    from transformers import GenerationConfig
    from transformers.generation import ContinuousBatchingConfig

    try:
        ids = [tok(t)["input_ids"] for t in texts]
        cfg = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=2, pad_token_id=0)
        paged = (ContinuousBatchingConfig(num_blocks=32, block_size=32, max_batch_tokens=256) if smoke
                 else ContinuousBatchingConfig())
        wall = 0.0
        for _ in range(2):
            sync(device)
            t0 = time.perf_counter()
            out = model.generate_batch(inputs=ids, generation_config=cfg, continuous_batching_config=paged,
                                       progress_bar=False)
            sync(device)
            wall = time.perf_counter() - t0
        done = sum(1 for r in out.values() if getattr(r, "generated_tokens", None))
        if done < len(texts):
            return f"unavailable ({len(texts) - done} of {len(texts)} requests failed)"
        return f"{done / wall:.1f}"
    except Exception as err:  # an API that moves between releases: report it, do not fail the bench
        return f"unavailable ({type(err).__name__}: {str(err)[:120]})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cpu", action="store_true", help="the comparison on the CPU with a 0.06 B model")
    where.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the script only")
    args = parser.parse_args()
    on_cpu = args.smoke or args.cpu
    if not on_cpu and not torch.cuda.is_available():
        print("gpu_eval: no GPU: not measured (no CUDA device on this machine; run it on one, see "
              "docs/benchmarks.md; --cpu runs the comparison on this CPU)")
        return 0
    shape = SMOKE if args.smoke else CPU if args.cpu else FULL
    device = torch.device("cpu" if on_cpu else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    tok = word_tokenizer(shape["vocab"])
    model = random_llama(shape, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"cpu ({'smoke' if args.smoke else f'{torch.get_num_threads()} threads'})")
    texts = prompts(shape["prompts"], shape["vocab"])
    print(f"gpu_eval: {name}, random Llama {params / 1e9:.2f} B params, {dtype}, {len(texts)} prompts × "
          f"{shape['new']} new tokens, greedy")
    plain(model, tok, texts[: shape["batches"][0]], shape["batches"][0], 2, device)  # warm-up: kernels, allocator
    best = 0.0
    for b in shape["batches"]:
        ips = plain(model, tok, texts, b, shape["new"], device)
        best = max(best, ips)
        print(f"  plain generate, batch {b:4d}: {ips:8.1f} items/s")
    with tempfile.TemporaryDirectory() as tmp:
        ips, peak = engine(model, tok, texts, shape["new"], Path(tmp))
    print(f"  loopgate engine           : {ips:8.1f} items/s (peak memory {peak:,.0f} MB)")
    print(f"  continuous batching       : {continuous(model, tok, texts, shape['new'], device, args.smoke)} items/s")
    print(f"gpu_eval: vs_plain={ips / best:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
