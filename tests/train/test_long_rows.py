"""A training row longer than the model's context is cut to fit it (never an ``IndexError`` inside a GPT-2
embedding), keeping the answer tokens, and the run's provenance counts the cut rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from loopgate.models import char_tokenizer, save_model
from loopgate.spec import LoraSettings, Recipe, TinyModelSettings
from loopgate.train import run_update
from loopgate.train.data import IGNORE_INDEX, count_long_rows, fit_example, tokenize_row, tokenize_rows

LONG_PROMPT = "please reverse the following word for me, carefully: "  # 53 characters, one token each


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 with 32 learned positions and the char tokenizer: one more position is an IndexError."""
    tok = char_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    return save_model(model, tok, tmp_path_factory.mktemp("gpt2") / "model")


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_long_row_gives_up_prompt_tokens_from_the_left_first() -> None:
    ex = fit_example(list(range(10)), [100, 101, 102], 8)
    assert ex.input_ids == [5, 6, 7, 8, 9, 100, 101, 102]  # the end of the prompt and the whole answer
    assert ex.labels == [IGNORE_INDEX] * 5 + [100, 101, 102]
    # an answer that cannot fit on its own keeps one prompt token to be predicted from, then its start
    ex = fit_example([1, 2, 3], list(range(100, 110)), 8)
    assert ex.input_ids == [3, 100, 101, 102, 103, 104, 105, 106]
    assert ex.labels[0] == IGNORE_INDEX and ex.labels[1:] == [100, 101, 102, 103, 104, 105, 106]
    assert fit_example([1, 2], [3], 8).input_ids == [1, 2, 3]  # a short row is untouched


def test_batched_and_single_tokenisation_cut_alike_and_are_counted() -> None:
    tok = char_tokenizer()
    rows = [{"prompt": LONG_PROMPT, "completion": "olleh"}, {"prompt": "ab", "completion": "ba"},
            {"text": LONG_PROMPT}]
    batched = tokenize_rows(rows, tok, 16)
    assert batched == [tokenize_row(r, tok, 16) for r in rows]
    assert all(len(e.input_ids) <= 16 for e in batched)
    assert tok.decode(batched[0].input_ids) == LONG_PROMPT[-10:] + "olleh" + tok.eos_token
    assert count_long_rows(rows, tok, 16) == 2
    assert count_long_rows([{"prompt": "ab", "chosen": "x" * 20, "rejected": "y"}], tok, 16) == 1


@pytest.mark.parametrize("method", ["sft", "lora", "pretrain"])
def test_rows_longer_than_a_gpt2_context_train_and_are_recorded(method: str, gpt2_dir: Path, tmp_path: Path
                                                                 ) -> None:
    rows = [{"prompt": LONG_PROMPT + w, "completion": w[::-1]} for w in ("abc", "dog", "sun")]
    rows.append({"prompt": "ab", "completion": "ba"})
    if method == "pretrain":
        rows = [{"text": r["prompt"] + r["completion"]} for r in rows]
    data = write_rows(tmp_path / "d.jsonl", rows)
    lora = LoraSettings(r=2, target_modules=["c_attn"]) if method == "lora" else None
    recipe = Recipe(method=method, steps=2, batch_size=4, max_length=128, lora=lora)  # type: ignore[arg-type]
    res = run_update(gpt2_dir, recipe, [data], tmp_path / "out")
    prov = res.provenance
    assert prov["max_length"] == 32 and prov["context_positions"] == 32
    assert prov["truncated_rows"] == {"data": 3, "replay": 0, "retention": 0}
    assert prov["recipe"]["max_length"] == 128  # the recipe as given; what it was cut to is beside it
    assert res.metrics["final_loss"] == res.metrics["final_loss"]  # finite: a real loss, not NaN


def test_replay_rows_are_cut_and_counted_too(gpt2_dir: Path, tmp_path: Path) -> None:
    data = write_rows(tmp_path / "d.jsonl", [{"prompt": "ab", "completion": "ba"}])
    replay = write_rows(tmp_path / "r.jsonl", [{"prompt": LONG_PROMPT, "completion": "x"}])
    res = run_update(gpt2_dir, Recipe(method="sft", steps=2, batch_size=2), [data], tmp_path / "out",
                     replay=[replay])
    assert res.provenance["truncated_rows"] == {"data": 0, "replay": 1, "retention": 0}


def test_a_fresh_tiny_llama_is_cut_to_its_own_positions(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "d.jsonl", [{"prompt": LONG_PROMPT, "completion": "ok"}, {"prompt": "a",
                                                                                          "completion": "b"}])
    shape = TinyModelSettings(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_positions=24)
    res = run_update(None, Recipe(method="sft", steps=2, batch_size=2, max_length=64, model=shape), [data],
                     tmp_path / "out")
    assert res.provenance["max_length"] == 24 and res.provenance["truncated_rows"]["data"] == 1
    # a recipe whose max_length is already within the context keeps it
    res = run_update(None, Recipe(method="sft", steps=1, batch_size=2, max_length=16, model=shape), [data],
                     tmp_path / "out2")
    assert res.provenance["max_length"] == 16
