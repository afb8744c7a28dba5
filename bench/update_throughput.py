"""Update throughput: one LoRA update through Loopgate's ``run_update`` vs a minimal hand-written PyTorch + peft
loop on the same batches.

Both sides load the same parent, wrap it with the same ``LoraConfig``, run the same AdamW steps on the same
batches (built once with ``loopgate.train.data.batches``, outside the hand-written timer — which favours the
hand-written side) and save the adapter as safetensors. Tokens/s = real (non-pad) tokens / wall seconds of the
whole update. Each side runs ``--repeats`` times, alternating, and the best run counts (the machine is shared).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/update_throughput.py [--steps 100] [--batch-size 32] [--repeats 2]

The last line reads exactly ``update_throughput: vs_handwritten=R``.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import tempfile
import time
from pathlib import Path

import torch
from peft import get_peft_model

from loopgate.models import build_tiny_model, load_model, save_model, set_threads
from loopgate.spec import LoraSettings, Recipe
from loopgate.train import run_update
from loopgate.train.data import batches, load_rows, tokenize_rows
from loopgate.train.lora import lora_config


def make_data(path: Path, n: int = 2000) -> Path:
    """Word reversal rows: prompt ``R word=``, completion the reversed word."""
    rng = random.Random(0)
    rows = []
    for _ in range(n):
        w = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8)))
        rows.append({"prompt": f"R {w}=", "completion": w[::-1]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def handwritten(parent: Path, recipe: Recipe, data: Path, out: Path) -> tuple[int, float]:
    """The reference: load, wrap with peft, plain AdamW loop, save. Returns (tokens, wall seconds)."""
    tok = load_model(parent).tokenizer
    rows = load_rows(data, "sft")
    todo = list(batches(tokenize_rows(rows, tok, recipe.max_length), [], batch_size=recipe.batch_size, share=0.0,
                        steps=recipe.steps, seed=recipe.seed, pad_id=tok.pad_token_id))
    start = time.perf_counter()
    base = load_model(parent, trainable=True).model
    torch.manual_seed(recipe.seed)
    assert recipe.lora is not None
    model = get_peft_model(base, lora_config(recipe.lora, base, tok))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr)
    model.train()
    tokens = 0
    for b in todo:
        loss = model(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=b.labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        tokens += b.n_tokens
    model.save_pretrained(str(out), safe_serialization=True)
    return tokens, time.perf_counter() - start


def loopgate(parent: Path, recipe: Recipe, data: Path, out: Path) -> tuple[int, float]:
    start = time.perf_counter()
    result = run_update(parent, recipe, [data], out)
    return int(result.provenance["tokens_seen"]), time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    set_threads()
    recipe = Recipe(method="lora", steps=args.steps, batch_size=args.batch_size, lr=1e-3, max_length=32,
                    lora=LoraSettings(r=8))
    with tempfile.TemporaryDirectory(prefix="lg-bench-") as tmp:
        root = Path(tmp)
        model, tok = build_tiny_model()
        parent = save_model(model, tok, root / "parent")
        data = make_data(root / "data.jsonl")
        n_params = sum(p.numel() for p in model.parameters())
        print(f"tiny model {n_params / 1e6:.2f} M params, LoRA r={recipe.lora.r if recipe.lora else 0}, "
              f"{args.steps} steps x batch {args.batch_size}, {torch.get_num_threads()} torch thread(s)")
        best: dict[str, float] = {"handwritten": 0.0, "loopgate": 0.0}
        for i in range(args.repeats):
            for name, fn in (("handwritten", handwritten), ("loopgate", loopgate)):
                tokens, wall = fn(parent, recipe, data, root / f"{name}{i}")
                tps = tokens / wall
                best[name] = max(best[name], tps)
                print(f"  run {i} {name:<11} {tokens} tokens in {wall:6.2f} s = {tps:8.0f} tokens/s")
        ratio = best["loopgate"] / best["handwritten"]
        print(f"best: handwritten {best['handwritten']:.0f} tokens/s, loopgate {best['loopgate']:.0f} tokens/s")
    print(f"update_throughput: vs_handwritten={ratio:.2f}")


if __name__ == "__main__":
    main()
