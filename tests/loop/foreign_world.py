"""A world Loopgate never built: a foundation made with plain ``transformers`` and a byte-level BPE tokenizer
trained with ``tokenizers`` — no Loopgate code touches it before ``loopgate register``.

Skills are small memorised mappings (a tiny model learns 24 of them in about a hundred full-batch steps),
each answer one or two BPE tokens:

- colours (the foundation's): ``colour of apple =`` → `` red``
- sizes   (the new foundation's extra skill): ``size of apple =`` → `` small``
- teams   (the industrial line's): ``ticket about apple =`` → `` the billing desk``
- refunds (the application line's): ``refund for apple =`` → `` approved``
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

OBJECTS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "candle", "forest", "rocket",
           "mirror", "garden", "pencil", "bridge", "castle", "violin", "carpet", "window", "saddle", "marble",
           "button", "ladder", "kettle", "anchor"]
COLOURS = ["red", "blue", "green", "black"]
SIZES = ["small", "big"]
TEAMS = ["the billing desk", "the shipping desk", "the support desk"]
REFUNDS = ["approved", "denied"]
EOS = "<|endoftext|>"


def _pick(options: list[str], seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    return {o: rng.choice(options) for o in OBJECTS}


def skill(name: str, seed: int) -> list[tuple[str, str]]:
    """(prompt, answer) pairs of one skill; the mapping depends on the seed."""
    table = {"colours": ("colour of {} =", COLOURS, 1), "sizes": ("size of {} =", SIZES, 2),
             "teams": ("ticket about {} =", TEAMS, 3), "refunds": ("refund for {} =", REFUNDS, 4)}[name]
    template, options, salt = table
    return [(template.format(o), " " + a) for o, a in _pick(options, seed * 10 + salt).items()]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sft_rows(pairs: list[tuple[str, str]], repeat: int = 1) -> list[dict[str, str]]:
    return [{"prompt": p, "completion": a * repeat} for p, a in pairs]


def suite_rows(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"id": f"q{i}", "prompt": p, "target": a.strip()} for i, (p, a) in enumerate(pairs)]


def build_tokenizer(out: Path) -> None:
    """A byte-level BPE tokenizer trained on the world's text (vocabulary ~300), saved as an HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [f"{p}{a}" for s in ("colours", "sizes", "teams", "refunds") for seed in range(3)
              for p, a in skill(s, seed)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS).save_pretrained(str(out))


def _train(model: torch.nn.Module, tok: object, pairs: list[tuple[str, str]], steps: int, lr: float,
           seed: int) -> float:
    """A plain full-batch loop: loss on the answer and eos only."""
    torch.manual_seed(seed)
    eos = tok.eos_token_id  # type: ignore[attr-defined]
    seqs, labels = [], []
    for p, a in pairs:
        prompt = tok(p)["input_ids"]  # type: ignore[operator]
        answer = tok(a, add_special_tokens=False)["input_ids"] + [eos]  # type: ignore[operator]
        seqs.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), eos)
    lab = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, lb) in enumerate(zip(seqs, labels, strict=True)):
        ids[i, : len(s)], lab[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), torch.tensor(lb), 1
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


def build_foundations(root: Path, seed: int) -> tuple[Path, Path]:
    """``foundation-1`` (colours) and ``foundation-2`` (foundation-1 continued on colours + sizes), each a plain
    HF directory with safetensors weights and the BPE tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok_dir = root / "tokenizer"
    build_tokenizer(tok_dir)
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                         bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.eos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    _train(model, tok, skill("colours", seed), steps=150, lr=3e-3, seed=seed)
    f1 = root / "foundation-1"
    model.save_pretrained(str(f1), safe_serialization=True)
    tok.save_pretrained(str(f1))
    _train(model, tok, skill("colours", seed) + skill("sizes", seed), steps=80, lr=1e-3, seed=seed + 1)
    f2 = root / "foundation-2"
    model.save_pretrained(str(f2), safe_serialization=True)
    tok.save_pretrained(str(f2))
    return f1, f2
