"""The tiny built-in model family: a small Llama-style causal LM and a character-level tokenizer.

Small enough to train from scratch on a laptop CPU in seconds (≈1 M parameters), yet a normal
Hugging Face model directory: ``AutoModelForCausalLM`` / ``AutoTokenizer`` load it offline.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]
# printable ASCII (space..~) plus newline: enough for the synthetic domains, ~100 symbols
CHARS = [c for c in string.printable if c not in "\t\r\x0b\x0c"]


def char_tokenizer(chars: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer: every character is one token (no merges to learn)."""
    alphabet = list(dict.fromkeys(chars or CHARS))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + alphabet)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # isolate every character, whitespace included, so decode(encode(s)) == s
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        model_max_length=512,
    )
    return fast


@dataclass(frozen=True)
class TinyConfig:
    """Shape of a tiny model; the defaults give about 1.1 M parameters."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_positions: int = 256
    seed: int = 0


def build_tiny_model(cfg: TinyConfig | None = None, tokenizer: PreTrainedTokenizerFast | None = None
                     ) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A freshly initialised tiny Llama and its tokenizer, deterministic from ``cfg.seed``."""
    cfg = cfg or TinyConfig()
    tok = tokenizer or char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
