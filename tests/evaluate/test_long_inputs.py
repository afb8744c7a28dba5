"""A suite prompt longer than the model's context is cut from the left to fit the context less the generation
budget (or the longest choice), and the evaluation records how many were cut — or, with ``on_long: refuse``, the
suite is refused naming the rows. A GPT-2-family model used to raise ``IndexError: index out of range in self``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from loopgate.errors import DataError
from loopgate.evaluate.engine import choice_loglikelihoods, evaluate_suite, generate
from loopgate.evaluate.suites import load_suite
from loopgate.models import LoadedModel, TinyConfig, build_tiny_model, char_tokenizer, load_model, save_model
from loopgate.spec import SuiteSpec

LONG = "the quick brown fox jumps over the lazy dog " * 3  # 132 characters, one token each


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A tiny GPT-2 with 32 learned positions and the char tokenizer, saved and loaded like any model folder."""
    tok = char_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    return load_model(save_model(model, tok, tmp_path_factory.mktemp("gpt2") / "model"))


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    model, tok = build_tiny_model(TinyConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                                             max_positions=32))
    return load_model(save_model(model, tok, tmp_path_factory.mktemp("llama") / "model"))


def suite_file(root: Path, rows: list[dict[str, object]]) -> Path:
    path = root / "suite.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_model_really_has_32_positions(gpt2: LoadedModel) -> None:
    ids = torch.tensor([gpt2.tokenizer(LONG[:40])["input_ids"]])
    with pytest.raises(IndexError):  # what every long prompt ran into before
        gpt2.model(input_ids=ids)


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_a_long_prompt_keeps_its_last_tokens(which: str, request: pytest.FixtureRequest) -> None:
    loaded: LoadedModel = request.getfixturevalue(which)
    cut: list[int] = []
    got = generate(loaded.model, loaded.tokenizer, ["abc", LONG, "xyz"], max_new_tokens=8, stop=[], truncated=cut)
    assert cut == [1]
    # the same continuation as the prompt's last 32 - 8 characters: the end of a prompt is what the answer follows
    [tail] = generate(loaded.model, loaded.tokenizer, [LONG[-24:]], max_new_tokens=8, stop=[])
    assert got[1].text == tail.text and got[1].output_tokens == 8
    short = generate(loaded.model, loaded.tokenizer, ["abc", "xyz"], max_new_tokens=8, stop=[])
    assert [got[0].text, got[2].text] == [g.text for g in short]  # short prompts are untouched


def test_a_budget_that_leaves_no_room_is_refused(gpt2: LoadedModel) -> None:
    with pytest.raises(DataError, match="40 tokens .* leave no room for a prompt in the model's context of 32"):
        generate(gpt2.model, gpt2.tokenizer, ["abc"], max_new_tokens=40)


def test_long_choice_prompts_fit_with_their_longest_choice(gpt2: LoadedModel) -> None:
    cut: list[int] = []
    scores = choice_loglikelihoods(gpt2.model, gpt2.tokenizer, [LONG, "abc"], [["yes", "no"], ["a", "b"]],
                                   truncated=cut)
    assert cut == [0]
    # the prompt keeps 32 - (3 - 1) = 30 tokens: the same scores as the prompt's last 30 characters
    [tail] = choice_loglikelihoods(gpt2.model, gpt2.tokenizer, [LONG[-30:]], [["yes", "no"]])
    assert scores[0].loglikelihoods == pytest.approx(tail.loglikelihoods, abs=1e-4)


@pytest.mark.parametrize("kind", ["generation", "choice", "safety"])
def test_an_evaluation_records_how_many_prompts_were_cut(kind: str, gpt2: LoadedModel, tmp_path: Path) -> None:
    extra: dict[str, object] = {"generation": {"target": "x"}, "choice": {"choices": ["x", "y"], "label": 0},
                                "safety": {"expect": "refuse"}}[kind]  # type: ignore[assignment]
    rows = [{"id": f"r{i}", "prompt": p, **extra} for i, p in enumerate(["abc", LONG, LONG + "?", "q"])]
    suite = load_suite("long", SuiteSpec(path=str(suite_file(tmp_path, rows)), kind=kind, max_new_tokens=4))
    ev = evaluate_suite(gpt2.model, gpt2.tokenizer, suite, version="gpt2@1")
    assert ev.n == 4 and ev.metrics["truncated_prompts"] == 2
    assert [e.prompt for e in ev.examples][1] == LONG  # the record keeps the prompt as the suite wrote it


def test_on_long_refuse_names_the_rows(gpt2: LoadedModel, tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "prompt": p, "target": "x"} for i, p in enumerate(["abc", LONG, "q"])]
    spec = SuiteSpec(path=str(suite_file(tmp_path, rows)), max_new_tokens=4, on_long="refuse")
    with pytest.raises(DataError, match=r"suite 'long' .*1 of 3 prompts \(rows 'r1'\) .*context of 32 positions"
                                        r".*on_long: truncate"):
        evaluate_suite(gpt2.model, gpt2.tokenizer, load_suite("long", spec), version="gpt2@1")
    short = SuiteSpec(path=str(suite_file(tmp_path, rows[::2])), max_new_tokens=4, on_long="refuse")
    ev = evaluate_suite(gpt2.model, gpt2.tokenizer, load_suite("short", short), version="gpt2@1")
    assert "truncated_prompts" not in ev.metrics
