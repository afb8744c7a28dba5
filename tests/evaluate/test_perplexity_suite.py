"""``kind: perplexity``: bits per byte on held-out text, sliding windows over long documents, and a forgetting the
perplexity suite blocks while the exact-match suite on the same versions still passes."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from eval_helpers import reverse_prompt, word_list, write_jsonl
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers import models as tk_models
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
from tuned_models import further_trained

from loopgate.errors import DataError
from loopgate.evaluate.engine import evaluate_suite
from loopgate.evaluate.metrics import paired_comparison
from loopgate.evaluate.perplexity import document_nlls, windows
from loopgate.evaluate.suites import Suite, load_suite
from loopgate.gates import regression
from loopgate.gates.context import GateContext
from loopgate.models import LoadedModel, load_model
from loopgate.records import Evaluation, ExampleResult, Verdict
from loopgate.spec import RegressionPolicy, SuiteSpec

NOUNS = ["cat", "dog", "bird", "fish", "horse", "goat"]
VERBS = ["sees", "likes", "chases", "feeds"]
ADJECTIVES = ["red", "big", "old", "shy"]


def keep_sentence(rng: random.Random) -> str:
    """The line's own prose: text it must keep predicting well."""
    return f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)}. "


def other_sentence(rng: random.Random) -> str:
    """Other text an update trains on."""
    a, b = rng.randint(1, 50), rng.randint(1, 50)
    return f"{a} plus {b} is {a + b}. "


def document(sentence: Any, rng: random.Random, n: int = 3) -> str:
    return "".join(sentence(rng) for _ in range(n))


@pytest.mark.parametrize(("n", "context_len", "stride"), [(5, 8, None), (8, 8, None), (9, 8, None), (100, 16, None),
                                                          (100, 16, 3), (100, 16, 16), (33, 10, 1)])
def test_windows_score_every_position_once_within_the_context(n: int, context_len: int, stride: int | None) -> None:
    scored: list[int] = []
    for start, end, first in windows(n, context_len, stride):
        assert end - start <= context_len and start < first <= end
        scored += range(first, end)
    assert scored == list(range(1, n))


def test_bits_per_byte_is_the_summed_nll_over_the_utf8_bytes(loaded: LoadedModel) -> None:
    model, tok = loaded.model, loaded.tokenizer
    text = "the red cat sees the dog. é"  # 'é' is two bytes: bits per byte divides by bytes, not characters
    (doc,) = document_nlls(model, tok, [text], size_for=lambda n: 4)
    ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logp = model(input_ids=torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)
    by_hand = -sum(float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1))
    assert doc.tokens == len(ids) - 1 and doc.bytes == len(text) + 1
    assert doc.nll == pytest.approx(by_hand, rel=1e-5)
    assert doc.bits_per_byte == pytest.approx(by_hand / math.log(2) / (len(text) + 1), rel=1e-5)


def test_a_document_longer_than_the_context_is_read_in_windows(loaded: LoadedModel) -> None:
    model, tok = loaded.model, loaded.tokenizer
    context_len = model.config.max_position_embeddings
    rng = random.Random(5)
    parts = [document(keep_sentence, rng, 2) for _ in range(12)]
    long_text = "".join(parts)
    assert len(long_text) > 2 * context_len  # char-level tokenizer: one token per character
    long_doc, *short = document_nlls(model, tok, [long_text, *parts], size_for=lambda n: 8, stride=context_len // 4)
    assert long_doc.tokens == len(long_text)  # every token scored once (plus none twice)
    # with more context per token than the parts read alone, the long document is no worse per byte than they are
    pooled = sum(d.nll for d in short) / math.log(2) / sum(d.bytes for d in short)
    assert math.isfinite(long_doc.bits_per_byte) and long_doc.bits_per_byte < pooled * 1.1


def test_a_bpe_model_without_bos_and_with_32_learned_positions(loaded: LoadedModel) -> None:
    """Bits per byte do not care how text is cut into tokens: a byte-level BPE GPT-2 (no BOS: the text is read
    after EOS; 32 learned positions: long documents go through windows) is measured on the same bytes."""
    rng = random.Random(3)
    corpus = [document(keep_sentence, rng) for _ in range(200)]
    bpe = Tokenizer(tk_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="</s>", pad_token="</s>")
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                      eos_token_id=tok.eos_token_id)).eval()
    text = document(keep_sentence, rng, 8) + "naïve café"  # multi-byte characters count by their bytes
    ids = tok(text)["input_ids"]
    assert tok.bos_token_id is None and 32 < len(ids) < len(text.encode("utf-8"))  # tokens span several bytes
    bpe_doc, = document_nlls(gpt2, tok, [text], size_for=lambda n: 4)
    char_doc, = document_nlls(loaded.model, loaded.tokenizer, [text], size_for=lambda n: 4)
    assert bpe_doc.tokens == len(ids) and char_doc.tokens == len(text)  # every token scored, the first one too
    assert bpe_doc.bytes == char_doc.bytes == len(text.encode("utf-8"))
    # an untrained model is near uniform over its vocabulary: about ln(V) nats per token, spread over the bytes
    uniform = len(ids) * math.log(len(tok)) / math.log(2) / bpe_doc.bytes
    assert bpe_doc.bits_per_byte == pytest.approx(uniform, rel=0.1)


def test_rows_need_text(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "text": "fine"}, {"id": 2, "prompt": "no text"}])
    with pytest.raises(DataError, match=r"a.jsonl:2: missing field 'text'"):
        load_suite("keep", SuiteSpec(path="a.jsonl", kind="perplexity"), tmp_path)
    write_jsonl(tmp_path / "b.jsonl", [{"id": 1, "text": ""}])
    with pytest.raises(DataError, match=r"b.jsonl:1: field 'text' is empty"):
        load_suite("keep", SuiteSpec(path="b.jsonl", kind="perplexity"), tmp_path)


def test_bad_perplexity_settings_are_a_spec_error_exit_2(tmp_path: Path, cli: Any) -> None:
    (tmp_path / "loopgate.yaml").write_text("suites:\n  keep: {path: keep.jsonl, kind: perplexity, stride: 0}\n"
                                            "lines:\n  base: {tier: foundation, suites: [keep]}\n")
    res = cli("status", workspace=tmp_path)
    assert res.code == 2 and "suites.keep.stride" in res.err and "Traceback" not in res.err
    (tmp_path / "loopgate.yaml").write_text("suites:\n  keep: {path: keep.jsonl, stride: 8}\n"
                                            "lines:\n  base: {tier: foundation, suites: [keep]}\n")
    res = cli("status", workspace=tmp_path)
    assert res.code == 2 and "'stride' is for kind: perplexity" in res.err and "Traceback" not in res.err


# --------------------------------------------------------------------------- forgetting


@pytest.fixture(scope="module")
def versions(model_dir: Path) -> dict[str, Path]:
    """v1: the reversal model trained further on the line's prose; v2: v1 trained on other text (and on reversal,
    which the team replays because its exact-match suite checks it) — the prose is forgotten."""
    train_words = word_list(3000, seed=1)[:400]
    reversal = [(reverse_prompt(w), w[::-1] + "\n") for w in train_words]
    rng = random.Random(1)
    prose = [("", document(keep_sentence, rng)) for _ in range(400)]
    other = [("", document(other_sentence, rng)) for _ in range(400)]
    v1 = further_trained(model_dir, "ppl-v1", reversal + prose, steps=80, lr=1e-3)
    return {"v1": v1, "v2": further_trained(v1, "ppl-v2", reversal + other, steps=40, lr=1e-3)}


@pytest.fixture(scope="module")
def keep_suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    root = tmp_path_factory.mktemp("keep")
    rng = random.Random(7)  # held out: not the training documents' seed
    write_jsonl(root / "keep.jsonl", [{"id": f"d{i}", "text": document(keep_sentence, rng)} for i in range(40)])
    return load_suite("keep", SuiteSpec(path="keep.jsonl", kind="perplexity"), root)


def context(**kw: Any) -> GateContext:
    """A context for candidate support@3 of line support (as tests/gates/gate_helpers.py builds them)."""
    return GateContext(line="support", tier="application", candidate="support@3", requester="alice", **kw)


def _evaluate(path: Path, version: str, suites: list[Suite]) -> dict[str, Evaluation]:
    loaded = load_model(path)
    return {s.name: evaluate_suite(loaded.model, loaded.tokenizer, s, version=version) for s in suites}


def test_forgetting_shows_in_perplexity_before_exact_match(versions: dict[str, Path], keep_suite: Suite,
                                                           gen_suite: Suite) -> None:
    before = _evaluate(versions["v1"], "support@2", [keep_suite, gen_suite])
    after = _evaluate(versions["v2"], "support@3", [keep_suite, gen_suite])
    keep_before, keep_after = before["keep"], after["keep"]
    assert keep_before.kind == "perplexity" and keep_before.n == 40
    assert keep_before.score == pytest.approx(keep_before.metrics["bits_per_byte"])
    assert keep_before.score < 1.5 < 3.0 < keep_after.score  # bits per byte: lower is better
    assert all(e.score > 0 for e in keep_after.examples)
    cmp = paired_comparison(keep_before, keep_after)
    assert cmp.test == "sign" and cmp.delta < -1.0 and cmp.ci_high < -1.0  # worse reads as a negative delta
    # the exact-match suite on the same two versions: reversal kept (4 of its 40 targets are wrong on purpose)
    assert after["reverse"].score >= before["reverse"].score - 0.05 and before["reverse"].score > 0.5

    ctx = context(owned_suites=["keep", "reverse"], candidate_evals=after,
                  baselines={"production": "support@2", "previous": None, "parent": None},
                  baseline_evals={"production": before})
    gate = regression(ctx, RegressionPolicy())
    assert gate.verdict is Verdict.failed and gate.blocking, gate.summary
    assert gate.evidence["suites"]["keep"]["verdict"] is Verdict.failed
    assert gate.evidence["suites"]["reverse"]["verdict"] is Verdict.passed

    # and the mirror: the candidate that learns the prose better is no regression
    ctx = context(owned_suites=["keep"], candidate_evals={"keep": keep_before},
                  baselines={"production": "support@1", "previous": None, "parent": None},
                  baseline_evals={"production": {"keep": keep_after}})
    assert regression(ctx, RegressionPolicy()).verdict is Verdict.passed


def test_lower_bits_per_byte_is_better_in_the_paired_comparison() -> None:
    def bpb(values: list[float]) -> Evaluation:
        examples = [ExampleResult(id=f"d{i}", correct=True, score=v) for i, v in enumerate(values)]
        return Evaluation(version="v", suite="keep", suite_sha256="x", kind="perplexity", n=len(values),
                          score=sum(values) / len(values), examples=examples)

    good, worse = bpb([1.0] * 25), bpb([1.2] * 20 + [1.0] * 5)
    forgot = paired_comparison(good, worse)
    assert forgot.delta == pytest.approx(-0.16) and forgot.ci_high < 0 and forgot.test == "sign"
    assert forgot.before_score == pytest.approx(1.0) and forgot.after_score == pytest.approx(1.16)
    assert paired_comparison(worse, good).delta == pytest.approx(0.16)
