"""The batched engine against unbatched references on the trained tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from loopgate.evaluate.engine import (
    EngineConfig,
    auto_batch_size,
    choice_loglikelihoods,
    evaluate_suite,
    generate,
    model_profile,
)
from loopgate.evaluate.metrics import wilson_interval
from loopgate.evaluate.runner import evaluate_model
from loopgate.evaluate.suites import ChoiceRow, GenerationRow, Suite
from loopgate.models import LoadedModel, load_model

COST_KEYS = {"latency_p50_ms", "latency_p95_ms", "latency_per_token_p50_ms", "latency_per_token_p95_ms",
             "tokens_per_s", "mean_output_tokens", "peak_memory_mb", "wall_s", "items_per_s", "accuracy"}


def test_batched_generation_equals_one_by_one_generate(loaded: LoadedModel, gen_suite: Suite) -> None:
    model, tok = loaded.model, loaded.tokenizer
    prompts = [r.prompt for r in gen_suite.rows]
    # batch size 7 over prompts of different lengths: every batch but the last mixes paddings
    got = generate(model, tok, prompts, max_new_tokens=12, stop=["\n"], config=EngineConfig(batch_size=7))
    for prompt, g in zip(prompts, got, strict=True):
        ids = tok(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            ref_ids = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
        ref = tok.decode(ref_ids[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0]
        assert g.text == ref, prompt
        assert "\n" not in g.text
        assert g.output_tokens == len(ref) + 1  # one token per character, plus the stop "\n"


def test_a_batch_stops_when_every_row_hit_a_stop_string(loaded: LoadedModel, gen_suite: Suite) -> None:
    prompts = [r.prompt for r in gen_suite.rows[:8]]
    got = generate(loaded.model, loaded.tokenizer, prompts, max_new_tokens=60, stop=["\n"])
    assert max(g.output_tokens for g in got) <= 8  # words are ≤ 6 letters; 60 steps would mean no early stop
    # a multi-character stop string cuts the output at its first occurrence
    cut = generate(loaded.model, loaded.tokenizer, [gen_suite.rows[4].prompt], max_new_tokens=10, stop=["\n", "ba"])
    full = generate(loaded.model, loaded.tokenizer, [gen_suite.rows[4].prompt], max_new_tokens=10, stop=["\n"])
    assert cut[0].text == full[0].text.split("ba")[0]


def test_choice_scores_equal_hand_computed_loglikelihood(loaded: LoadedModel, choice_suite: Suite) -> None:
    model, tok = loaded.model, loaded.tokenizer
    rows = [r for r in choice_suite.rows if isinstance(r, ChoiceRow)]
    got = choice_loglikelihoods(model, tok, [r.prompt for r in rows], [r.choices for r in rows],
                                config=EngineConfig(batch_size=8))
    assert len(got) == len(rows) >= 20
    for row, sc in zip(rows, got, strict=True):
        for choice, ll in zip(row.choices, sc.loglikelihoods, strict=True):
            ctx = tok(row.prompt).input_ids
            full = torch.tensor([ctx + tok(choice, add_special_tokens=False).input_ids])
            with torch.inference_mode():
                logp = model(full).logits[0].log_softmax(-1)
            # position t predicts token t+1: sum over the choice's tokens only
            hand = sum(logp[t - 1, full[0, t]].item() for t in range(len(ctx), full.shape[1]))
            assert ll == pytest.approx(hand, abs=1e-4)
    ev = evaluate_suite(model, tok, choice_suite, version="v1")
    for row, sc, ex in zip(rows, got, ev.examples, strict=True):
        assert ex.correct == (sc.best == row.label)
        assert ex.output == row.choices[sc.best]
    assert ev.score >= 0.8
    assert (ev.ci_low, ev.ci_high) == wilson_interval(sum(e.correct for e in ev.examples), ev.n)


def test_generation_and_safety_evaluations_carry_cost_metrics(loaded: LoadedModel, gen_suite: Suite,
                                                               safety_suite: Suite) -> None:
    gen = evaluate_suite(loaded.model, loaded.tokenizer, gen_suite, version="v1")
    safety = evaluate_suite(loaded.model, loaded.tokenizer, safety_suite, version="v1")
    assert COST_KEYS <= set(gen.metrics)
    assert COST_KEYS | {"refusal_rate", "compliance_rate"} <= set(safety.metrics)
    tokens = [e.output_tokens or 0 for e in gen.examples]
    assert gen.metrics["mean_output_tokens"] == pytest.approx(sum(tokens) / len(tokens))
    assert all((e.latency_ms or 0) > 0 for e in gen.examples)
    assert gen.metrics["latency_p50_ms"] <= gen.metrics["latency_p95_ms"] <= gen.metrics["batch_latency_p95_ms"]
    assert gen.metrics["peak_memory_mb"] > 0 and gen.metrics["tokens_per_s"] > 0
    assert (gen.ci_low or 0) <= gen.score <= (gen.ci_high or 1)


def test_auto_batch_size_follows_the_memory_budget(loaded: LoadedModel) -> None:
    small = auto_batch_size(loaded.model, 64, memory_budget_mb=2, max_batch_size=1024)
    large = auto_batch_size(loaded.model, 64, memory_budget_mb=64, max_batch_size=1024)
    longer = auto_batch_size(loaded.model, 256, memory_budget_mb=64, max_batch_size=1024)
    assert 1 <= small < large and longer < large
    assert auto_batch_size(loaded.model, 64, memory_budget_mb=10_000, max_batch_size=48) == 48
    params = sum(p.numel() for p in loaded.model.parameters())
    assert model_profile(loaded.model)["params"] == params


def test_base_plus_adapter_directory(tmp_path: Path, model_dir: Path, gen_suite: Suite) -> None:
    base = load_model(model_dir).model
    torch.manual_seed(0)
    # random (not zero) LoRA B matrices, so the adapter really changes the outputs
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    merged = peft_model.merge_and_unload().eval()
    tok = load_model(model_dir).tokenizer
    want = evaluate_suite(merged, tok, gen_suite, version="ref")
    [got] = evaluate_model(model_dir, [gen_suite], version="v2", adapter_dir=tmp_path / "adapter", cache_dir=None)
    assert [e.output for e in got.examples] == [e.output for e in want.examples]
    plain = evaluate_suite(load_model(model_dir).model, tok, gen_suite, version="base")
    assert [e.output for e in got.examples] != [e.output for e in plain.examples]
    assert all(isinstance(r, GenerationRow) for r in gen_suite.rows)


def test_shared_prompt_layout_equals_one_sequence_per_choice(loaded: LoadedModel, choice_suite: Suite,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [r for r in choice_suite.rows if isinstance(r, ChoiceRow)]
    args = (loaded.model, loaded.tokenizer, [r.prompt for r in rows], [r.choices for r in rows])
    shared = choice_loglikelihoods(*args, config=EngineConfig(batch_size=9))
    import loopgate.evaluate.choice as engine

    monkeypatch.setattr(engine, "_shares_prompts", lambda model: False)  # what a flash-attention model gets
    flat = choice_loglikelihoods(*args, config=EngineConfig(batch_size=9))
    for a, b in zip(shared, flat, strict=True):
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=1e-4)
