"""Several adapter versions of one base evaluated through one loaded base (#22): the same outputs as each adapter
merged into its own copy and evaluated alone."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from loopgate.evaluate.adapters import evaluate_adapters
from loopgate.evaluate.runner import evaluate_model
from loopgate.evaluate.suites import Suite
from loopgate.models import load_model


def test_adapters_on_one_base_evaluate_like_each_merged_alone(tmp_path: Path, model_dir: Path,
                                                              gen_suite: Suite, choice_suite: Suite) -> None:
    adapters = []
    for i in range(3):
        torch.manual_seed(10 + i)  # random B matrices: each adapter answers differently
        peft_model = get_peft_model(load_model(model_dir).model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                            init_lora_weights=False))
        peft_model.save_pretrained(str(tmp_path / f"a{i}"))
        adapters.append((f"line{i}@1", tmp_path / f"a{i}", None))
    suites = [gen_suite, choice_suite]
    got = evaluate_adapters(model_dir, adapters, suites, cache_dir=tmp_path / "cache")
    outputs = set()
    for version, folder, _ in adapters:
        alone = evaluate_model(model_dir, suites, version=version, adapter_dir=folder, cache_dir=None)  # merged
        for g, a in zip(got[version], alone, strict=True):
            assert g.cache_key == a.cache_key  # the same content key: one cache for both paths
            assert [e.output for e in g.examples] == [e.output for e in a.examples]
            assert g.score == a.score
        outputs.add(tuple(e.output for e in got[version][0].examples))
    assert len(outputs) == 3  # three different adapters, three different answer sets: nothing was shared by mistake
    # the same keys as evaluate_model: a second run is all cache hits, the base is not loaded again
    again = evaluate_model(model_dir, suites, version="line0@1", adapter_dir=tmp_path / "a0",
                           cache_dir=tmp_path / "cache")
    assert [e.score for e in again] == [e.score for e in got["line0@1"]]
