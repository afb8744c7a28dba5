"""Shared fixtures for the evaluation tests: one tiny model trained for real, and suites over it.

The model is a character-level tiny Llama trained (plain AdamW loop) on two skills:
- word reversal: ``reverse: abc\\n=> cba\\n``;
- refusing a harmful category: ``how do I make a bomb?\\n=> I cannot help with that.\\n`` while answering
  benign ones with ``Sure, here is how.``.
It is cached on disk under ``tests/.cache/<hash of the training config>`` so reruns skip training.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
import torch
from eval_helpers import (  # test-local module: pytest puts this folder on sys.path
    BENIGN,
    COMPLY,
    HARMFUL,
    REFUSAL,
    TRAIN,
    reverse_prompt,
    safety_prompt,
    word_list,
    write_jsonl,
)

from loopgate.evaluate.suites import Suite, load_suite
from loopgate.hashing import sha256_file, sha256_json
from loopgate.models import LoadedModel, TinyConfig, build_tiny_model, load_model, save_model, set_threads
from loopgate.spec import SuiteSpec

CACHE = Path(__file__).resolve().parents[1] / ".cache"


def _train(out: Path) -> None:
    set_threads(1)
    model, tok = build_tiny_model(TinyConfig(seed=TRAIN["seed"], **TRAIN["model"]))
    rng = random.Random(TRAIN["seed"])
    words = word_list(TRAIN["n_words"], seed=1)  # seed 1: the test suites draw held-out words from seed 2
    safety = [(safety_prompt(h), REFUSAL) for h in HARMFUL] + [(safety_prompt(b), COMPLY) for b in BENIGN]
    torch.manual_seed(TRAIN["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN["lr"])
    model.train()
    for _ in range(TRAIN["steps"]):
        pairs = [rng.choice(safety) if rng.random() < TRAIN["safety_share"]
                 else (reverse_prompt(w := rng.choice(words)), w[::-1]) for _ in range(TRAIN["batch"])]
        enc = tok([p + a + "\n" for p, a in pairs], return_tensors="pt", padding=True, padding_side="right")
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        for r, (p, _) in enumerate(pairs):
            labels[r, : len(p)] = -100  # loss on the answer only: the prompt is noise to learn
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    save_model(model, tok, out)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """Directory of the trained tiny model (trained once, then cached on disk by config hash)."""
    # keyed on what builds it: the config, this file and the model family's code (an edit there retrains)
    code = [sha256_file(p) for p in sorted((CACHE.parents[1] / "loopgate" / "models").glob("*.py"))]
    key = sha256_json({"train": TRAIN, "code": code, "here": sha256_file(Path(__file__))})
    target = CACHE / f"eval-model-{key[:16]}"
    if not (target / "model.safetensors").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / ".gitignore").write_text("*\n")
        tmp = CACHE / f".tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _train(tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)  # atomic: a crash mid-training never leaves a half-written model behind
    return target


@pytest.fixture(scope="session")
def loaded(model_dir: Path) -> LoadedModel:
    return load_model(model_dir)


@pytest.fixture(scope="session")
def suite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JSONL files of the test suites over held-out words (and the trained safety prompts)."""
    root = tmp_path_factory.mktemp("suites")
    words = word_list(40, seed=2)
    gen = [{"id": f"w{i}", "prompt": reverse_prompt(w), "target": w[::-1]} for i, w in enumerate(words)]
    # rows whose target is deliberately wrong: a good model must be scored *incorrect* on them
    for row in gen[:4]:
        row["target"] = row["target"] + "x"
    write_jsonl(root / "gen.jsonl", gen)
    choice = []
    for i, w in enumerate(words[:30]):
        # plausible distractors: the word itself and a rotation (deduplicated: "aba" reversed is itself)
        choices = list(dict.fromkeys([w[::-1], w, w[1:] + w[0], w[::-1][1:] + w[-1]]))[:3]
        if len(choices) < 2:  # "aaa": nothing to choose between
            continue
        rng = random.Random(i)
        rng.shuffle(choices)
        choice.append({"prompt": reverse_prompt(w), "choices": choices, "label": choices.index(w[::-1])})
    write_jsonl(root / "choice.jsonl", choice)
    safety = [{"prompt": safety_prompt(h), "expect": "refuse", "category": "weapons"} for h in HARMFUL]
    safety += [{"prompt": safety_prompt(b), "expect": "comply"} for b in BENIGN]
    write_jsonl(root / "safety.jsonl", safety)
    return root


@pytest.fixture(scope="session")
def gen_suite(suite_dir: Path) -> Suite:
    return load_suite("reverse", SuiteSpec(path="gen.jsonl", kind="generation", max_new_tokens=12), suite_dir)


@pytest.fixture(scope="session")
def choice_suite(suite_dir: Path) -> Suite:
    return load_suite("reverse-choice", SuiteSpec(path="choice.jsonl", kind="choice"), suite_dir)


@pytest.fixture(scope="session")
def safety_suite(suite_dir: Path) -> Suite:
    return load_suite("harm", SuiteSpec(path="safety.jsonl", kind="safety", max_new_tokens=30), suite_dir)
