"""Chat formats: ``messages`` rows in suites, SFT data and DPO data, rendered with a tiny tokenizer's Jinja chat
template; ``prompt`` rows stay raw; an app's template and decoding settings apply to the suites the app owns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loopgate.errors import DataError
from loopgate.evaluate.runner import evaluate_model
from loopgate.evaluate.suites import load_suite, suite_prompts
from loopgate.models import TinyConfig, build_tiny_model, char_tokenizer, load_tokenizer, save_model
from loopgate.spec import Recipe, SuiteSpec
from loopgate.train.data import load_rows, rendered_prompt, tokenize_row, tokenize_rows
from loopgate.train.update import run_update

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
SYSTEM = {"role": "system", "content": "answer in one word"}
PAIRS = [("sky colour?", "blue"), ("grass colour?", "green"), ("snow colour?", "white"),
         ("coal colour?", "black"), ("sun colour?", "yellow"), ("rose colour?", "red")]
# the same question asks for another answer under another system message: only the rendered chat says which
ECHO = {"role": "system", "content": "repeat the thing"}


def chat(question: str, system: dict[str, str] = SYSTEM) -> list[dict[str, str]]:
    return [system, {"role": "user", "content": question}]


def build_tokenizer(chat_template: str | None) -> Any:
    """A byte-level BPE tokenizer trained on this file's words, with the role markers as single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([f"{q} {a} {SYSTEM['content']} {ECHO['content']}" for q, a in PAIRS] * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="</s>")
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dims = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128, "max_positions": 64}
    model, tok = build_tiny_model(TinyConfig(seed=0, **dims), tokenizer=build_tokenizer(TEMPLATE))
    return save_model(model, tok, tmp_path_factory.mktemp("chat") / "model")


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dims = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_positions": 64}
    model, tok = build_tiny_model(TinyConfig(seed=0, **dims), tokenizer=build_tokenizer(None))
    return save_model(model, tok, tmp_path_factory.mktemp("plain") / "model")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_messages_rows_render_through_the_chat_template_and_prompt_rows_stay_raw(tmp_path: Path,
                                                                                 chat_model: Path) -> None:
    tok = load_tokenizer(chat_model)
    path = write_jsonl(tmp_path / "s.jsonl", [{"id": "a", "messages": chat("sky colour?"), "target": "blue"},
                                              {"id": "b", "prompt": "sky colour?", "target": "blue"}])
    suite = load_suite("colours", SuiteSpec(path=str(path)))
    assert suite_prompts(suite, tok) == ["<|system|>answer in one word\n<|user|>sky colour?\n<|assistant|>",
                                         "sky colour?"]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "x", "messages": [{"role": "assistant", "content": "hi"}],
                                                "target": "t"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: the last message must be the user's"):
        load_suite("bad", SuiteSpec(path=str(bad)))


def test_a_tokenizer_without_a_chat_template_is_a_clear_error(tmp_path: Path, plain_model: Path) -> None:
    tok = load_tokenizer(plain_model)
    suite_file = write_jsonl(tmp_path / "s.jsonl", [{"id": "row7", "messages": chat("sky colour?"), "target": "b"}])
    suite = load_suite("colours", SuiteSpec(path=str(suite_file)))
    with pytest.raises(DataError, match=r"suite 'colours' \(.*s.jsonl\), row 'row7'.*no chat template"):
        suite_prompts(suite, tok)
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": chat("a?") + [{"role": "assistant", "content": "b"}]}])
    [row] = load_rows(data, "sft")
    with pytest.raises(DataError, match=r"d.jsonl:1: .*no chat template"):
        tokenize_row(row, tok, 64)
    with pytest.raises(DataError, match=r"d.jsonl:1: .*no chat template"):
        tokenize_rows([row], tok, 64)


@pytest.mark.parametrize("max_length", [6, 64])
def test_batched_tokenisation_is_the_row_by_row_one(tmp_path: Path, chat_model: Path, max_length: int) -> None:
    """``tokenize_rows`` encodes in batched calls; every example must be the one ``tokenize_row`` makes, for text,
    prompt and messages rows mixed in one file, truncated or not, with a BPE and the tiny family's tokenizer."""
    rows = [{"text": "snow colour? white"}, {"prompt": "sky colour?", "completion": " blue"},
            {"messages": chat("rose colour?") + [{"role": "assistant", "content": "red"}]},
            {"prompt": "", "completion": "x"}, {"text": "coal"}]
    [chat_row] = load_rows(write_jsonl(tmp_path / "m.jsonl", [rows[2]]), "sft")
    rows[2] = chat_row
    for tok in (load_tokenizer(chat_model), char_tokenizer()):
        plain = [r for r in rows if "messages" not in r] if tok.chat_template is None else rows
        batched = tokenize_rows(plain, tok, max_length)
        assert batched == [tokenize_row(r, tok, max_length) for r in plain]
        assert len(batched) == len(plain) and all(len(e.input_ids) <= max_length for e in batched)
    assert tokenize_rows([], char_tokenizer(), 8) == []


def tasks() -> list[tuple[str, list[dict[str, str]], str]]:
    """(id, messages, answer): each question twice, its colour under SYSTEM and itself under ECHO."""
    return [(f"{q}/{k}", chat(q, system), answer) for q, a in PAIRS
            for k, system, answer in (("colour", SYSTEM, a), ("echo", ECHO, q.split()[0]))]


def test_sft_on_messages_rows_teaches_the_answers_the_chat_suite_asks_for(tmp_path: Path, chat_model: Path) -> None:
    """Trained on chat rows, the model answers them asked through the template. The same user message wants two
    answers under two system messages, so it takes the rendered chat — rendered alike in training and evaluation
    — to get both right: the raw user messages cannot score more than half."""
    data = write_jsonl(tmp_path / "train.jsonl", [{"messages": m + [{"role": "assistant", "content": a}]}
                                                  for _, m, a in tasks()])
    [row, *_] = load_rows(data, "sft")
    assert row["completion"] == "blue" and rendered_prompt(row, load_tokenizer(chat_model)).endswith("<|assistant|>")
    recipe = Recipe(method="sft", steps=150, batch_size=12, lr=3e-3, warmup_steps=5, max_length=48)
    out = run_update(chat_model, recipe, [data], tmp_path / "out").out_dir
    chat_suite = load_suite("chat", SuiteSpec(path=str(write_jsonl(
        tmp_path / "chat.jsonl", [{"id": i, "messages": m, "target": a} for i, m, a in tasks()]))))
    raw_suite = load_suite("raw", SuiteSpec(path=str(write_jsonl(
        tmp_path / "raw.jsonl", [{"id": i, "prompt": m[-1]["content"], "target": a} for i, m, a in tasks()]))))
    chat_ev, raw_ev = evaluate_model(out, [chat_suite, raw_suite], version="v", cache_dir=None)
    assert chat_ev.score >= 11 / 12, [e.output for e in chat_ev.examples]
    assert raw_ev.score <= 0.5 < chat_ev.score - 0.4
    assert chat_ev.examples[0].prompt.startswith("<|system|>answer in one word")


def test_dpo_on_messages_rows(tmp_path: Path, chat_model: Path) -> None:
    rows = [{"messages": chat(q), "chosen": a, "rejected": "no"} for q, a in PAIRS]
    data = write_jsonl(tmp_path / "prefs.jsonl", rows)
    [row, *_] = load_rows(data, "dpo")
    assert "messages" in row and row["chosen"] == "blue"
    recipe = Recipe(method="dpo", steps=2, batch_size=6, lr=1e-3, max_length=48)
    result = run_update(chat_model, recipe, [data], tmp_path / "out")
    assert result.kind == "full" and result.provenance["tokens_seen"] > 0
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": chat("q"), "chosen": "a"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'rejected'"):
        load_rows(bad, "dpo")


APP_SPEC = """\
name: apps
suites:
  colours: {path: suites/colours.jsonl, max_new_tokens: 12, stop: []}
  faq: {path: suites/faq.jsonl, max_new_tokens: 12, stop: []}
lines:
  base: {tier: foundation, suites: [colours]}
  helpdesk:
    tier: app
    parent: base
    suites: [faq]
    app: {prompt_template: "Q: {input} A:", max_new_tokens: 3, stop: ["\\n"]}
"""


def test_an_apps_own_suite_is_gated_through_its_template_and_decoding(tmp_path: Path, plain_model: Path) -> None:
    from loopgate.evaluate.suites import load_ecosystem_suite
    from loopgate.loop.evaluation import evaluate_line_suites, line_suites
    from loopgate.loop.versions import register_model
    from loopgate.loop.workspace import Workspace

    ws, _ = Workspace.init(tmp_path / "ws", spec_text=APP_SPEC)
    try:
        for name in ("colours", "faq"):
            write_jsonl(_mkdir(ws.root / "suites") / f"{name}.jsonl",
                        [{"id": q, "prompt": q, "target": a} for q, a in PAIRS[:3]])
        assert line_suites(ws, "base") == (["colours", "faq"], [])
        faq, colours = load_ecosystem_suite(ws.eco, "faq"), load_ecosystem_suite(ws.eco, "colours")
        assert faq.app == "helpdesk" and colours.app is None
        raw_faq = load_suite("faq", ws.eco.suites["faq"], ws.eco.root)
        assert faq.sha256 != raw_faq.sha256  # the template is part of the suite's identity
        register_model(ws, "base", plain_model)
        evs = evaluate_line_suites(ws, "base@1")
        assert [e.prompt for e in evs["faq"].examples] == [f"Q: {q} A:" for q, _ in PAIRS[:3]]
        assert [e.prompt for e in evs["colours"].examples] == [q for q, _ in PAIRS[:3]]
        # the app's decoding settings: at most 3 new tokens, where the suite alone allows 12 (and no stop)
        assert max(e.output_tokens or 0 for e in evs["faq"].examples) <= 3
        assert max(e.output_tokens or 0 for e in evs["colours"].examples) > 3
    finally:
        ws.store.close()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
