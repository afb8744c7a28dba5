"""A LoRA update on a GPU through Loopgate (``run_update``) against a hand-written peft loop (issue #11).

The same randomly initialised ~0.3 B Llama as ``bench/gpu_eval.py`` (built here, nothing downloaded), saved once;
both sides load it in bf16 onto the GPU, wrap it with the same ``LoraConfig``, run the same AdamW steps on the
same batches (built once with ``loopgate.train.data.batches``, outside the hand-written timer) under bf16
autocast, and save the adapter. Tokens/s = real tokens / wall seconds of the whole update, best of
``--repeats`` alternating runs. Prints ``gpu_update: vs_handwritten=R`` (Loopgate ÷ hand-written; the issue asks
R ≥ 0.9). Without a CUDA device it prints that nothing was measured and exits 0; ``--cpu`` runs the comparison on
the CPU in float32 with a 0.06 B model (20 steps × batch 8 unless given; the CPU's figures, not the issue's);
``--smoke`` runs both sides on the CPU with a tiny model to check the script itself.

    .venv/bin/python bench/gpu_update.py [--steps 100] [--batch-size 32] [--repeats 2] [--cpu | --smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gpu_eval import CPU, FULL, SMOKE, random_llama, word_tokenizer  # noqa: E402

from loopgate.models import load_model, save_model  # noqa: E402
from loopgate.spec import LoraSettings, Recipe  # noqa: E402
from loopgate.train import run_update  # noqa: E402
from loopgate.train.data import batches, load_rows, tokenize_rows  # noqa: E402
from loopgate.train.lora import lora_config  # noqa: E402
from loopgate.train.precision import training_precision  # noqa: E402


def make_data(path: Path, vocab: int, n: int = 2000) -> Path:
    """Rows whose completion is the prompt's words in reverse order."""
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        words = [f"w{rng.randrange(vocab - 4)}" for _ in range(rng.randint(4, 12))]
        rows.append({"prompt": " ".join(words) + " w0", "completion": " " + " ".join(reversed(words))})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def handwritten(parent: Path, recipe: Recipe, data: Path, out: Path) -> tuple[int, float]:
    """The reference: load bf16 onto the device, wrap with peft, a plain AdamW loop under autocast, save."""
    from peft import get_peft_model

    prec = training_precision(frozen_base=True)
    tok = load_model(parent, device="cpu", dtype="float32").tokenizer
    todo = list(batches(tokenize_rows(load_rows(data, "sft"), tok, recipe.max_length), [],
                        batch_size=recipe.batch_size, share=0.0, steps=recipe.steps, seed=recipe.seed,
                        pad_id=tok.pad_token_id))
    sync(prec.device)
    start = time.perf_counter()
    base = load_model(parent, trainable=True, dtype=prec.load_dtype, device=prec.device).model
    torch.manual_seed(recipe.seed)
    assert recipe.lora is not None
    model = get_peft_model(base, lora_config(recipe.lora, base, tok))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr)
    model.train()
    tokens = 0
    for b in todo:
        with prec.forward():
            loss = model(**b.model_inputs(prec.device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        tokens += b.n_tokens
    model.save_pretrained(str(out), safe_serialization=True)
    sync(prec.device)
    return tokens, time.perf_counter() - start


def loopgate(parent: Path, recipe: Recipe, data: Path, out: Path) -> tuple[int, float]:
    sync(training_precision(frozen_base=True).device)
    start = time.perf_counter()
    result = run_update(parent, recipe, [data], out)
    sync(training_precision(frozen_base=True).device)
    return int(result.provenance["tokens_seen"]), time.perf_counter() - start


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=None, help="default 100 (20 with --cpu)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 32 (8 with --cpu)")
    ap.add_argument("--repeats", type=int, default=2)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--cpu", action="store_true", help="the comparison on the CPU with a 0.06 B model")
    where.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the script only")
    args = ap.parse_args()
    if not (args.smoke or args.cpu) and not torch.cuda.is_available():
        print("gpu_update: no GPU: not measured (no CUDA device on this machine; run it on one, see "
              "docs/benchmarks.md; --cpu runs the comparison on this CPU)")
        return 0
    small = args.smoke or args.cpu
    args.steps = args.steps or (20 if small else 100)
    args.batch_size = args.batch_size or (8 if small else 32)
    if small:
        os.environ["LOOPGATE_DEVICE"] = "cpu"
    if args.smoke:
        args.steps, args.batch_size, args.repeats = min(args.steps, 4), min(args.batch_size, 8), 1
    shape = SMOKE if args.smoke else CPU if args.cpu else FULL
    recipe = Recipe(method="lora", steps=args.steps, batch_size=args.batch_size, lr=1e-4, max_length=64,
                    lora=LoraSettings(r=16, alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    prec = training_precision(frozen_base=True)
    with tempfile.TemporaryDirectory(prefix="lg-gpu-update-") as tmp:
        root = Path(tmp)
        model = random_llama(shape, torch.device("cpu"), torch.float32)
        parent = save_model(model, word_tokenizer(shape["vocab"]), root / "parent")
        n_params = sum(p.numel() for p in model.parameters())
        del model
        data = make_data(root / "data.jsonl", shape["vocab"])
        name = (torch.cuda.get_device_name(prec.device) if prec.device.type == "cuda"
                else f"cpu ({'smoke' if args.smoke else f'{torch.get_num_threads()} threads'})")
        print(f"gpu_update: {name}, random Llama {n_params / 1e9:.2f} B params, LoRA r=16 (q,k,v,o), "
              f"{prec.scheme}, {args.steps} steps × batch {args.batch_size}")
        best = {"handwritten": 0.0, "loopgate": 0.0}
        for i in range(args.repeats):
            for label, fn in (("handwritten", handwritten), ("loopgate", loopgate)):
                tokens, wall = fn(parent, recipe, data, root / f"{label}{i}")
                best[label] = max(best[label], tokens / wall)
                print(f"  run {i} {label:<11} {tokens} tokens in {wall:6.2f} s = {tokens / wall:9.0f} tokens/s")
    print(f"gpu_update: vs_handwritten={best['loopgate'] / best['handwritten']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
