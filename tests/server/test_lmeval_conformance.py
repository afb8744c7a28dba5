"""lm-evaluation-harness 0.4.13 through a live ``loopgate serve`` gateway scores what Loopgate itself scores.

A server whose ``echo``/``logprobs`` are subtly wrong (an offset of one token, a missing first-token ``null``, a
prompt tokenised with an extra special token) makes lm-eval score at chance with no error, so this test checks
the numbers, not that lm-eval runs: per sample, the log-likelihood lm-eval reads out of the gateway's echoed
``token_logprobs`` equals :func:`loopgate.evaluate.engine.choice_loglikelihoods` on the same version and rows
to 1e-6 *relative* (both are float32 ``log_softmax`` of the same weights, but the engine packs a prompt's four
choices into one row under a 4D attention mask while the gateway scores each request as its own right-padded
row, so the kernels accumulate in another order: measured at most 1.9e-6 absolute on log-likelihoods near -7,
i.e. 2.7e-7 relative — two float32 ulps, whose spacing at |x| in [4, 8) is 4.8e-7; an absolute 1e-6 would
demand bit-equal kernels);
lm-eval's ``acc`` equals Loopgate's multiple-choice accuracy of the same rows and is far from chance (the
right letters are spread over all four choices, so an off-by-one scores ~0.25); and a ``generate_until`` task's
``exact_match`` equals Loopgate's own generation evaluation. Nothing is downloaded: the tasks read local JSON
files, the tokenizer is the version's own folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_world import DIMS, Server, copy_workspace, facts, template_workspace

from loopgate.evaluate.engine import choice_loglikelihoods, evaluate_suite
from loopgate.evaluate.suites import load_suite
from loopgate.loop.versions import version_ref
from loopgate.models import LoadedModel, load_model
from loopgate.spec import SuiteSpec

TASKS = Path(__file__).resolve().parents[1] / "data" / "lmeval"
LETTERS = "xyzw"


class World:
    def __init__(self, root: Path) -> None:
        self.rows = [{"id": f"f{i}", "prompt": p, "choices": list(LETTERS), "label": LETTERS.index(a), "target": a}
                     for i, (p, a) in enumerate(facts())]
        data = root / "facts.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        self.tasks = root / "tasks"
        self.tasks.mkdir()
        for name in ("facts_mc.yaml", "facts_gen.yaml"):  # the tasks as shipped, pointed at this run's rows
            (self.tasks / name).write_text((TASKS / name).read_text().replace("DATA", str(data)))
        self.data = data
        self.server = Server(copy_workspace(template_workspace(root / "t"), root / "ws"), require_keys=False)
        self.loaded: LoadedModel = load_model(version_ref(self.server.ws, "base@1"))

    def lm_eval(self, tasks: list[str], **model_args: Any) -> dict[str, Any]:
        import lm_eval
        from lm_eval.tasks import TaskManager

        args = {"model": "base", "base_url": self.server.url + "/completions", "tokenizer_backend": "huggingface",
                "tokenizer": str(self.loaded.path), "max_retries": 1,
                "max_length": DIMS["max_positions"], **model_args}
        return lm_eval.simple_evaluate(model="local-completions", model_args=args, tasks=tasks,
                                       task_manager=TaskManager(include_path=str(self.tasks)), log_samples=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    w = World(tmp_path_factory.mktemp("lmeval"))
    yield w
    w.server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _loglikelihoods(samples: list[dict[str, Any]]) -> dict[int, list[float]]:
    """lm-eval's per-sample, per-choice log-likelihoods, by doc id."""
    return {s["doc_id"]: [float(r[0]) for r in s["filtered_resps"]] for s in samples}


def _worst_relative(ours: list[list[float]], theirs: dict[int, list[float]]) -> float:
    return max(abs(a - b) / max(1.0, abs(a)) for i, row in enumerate(ours) for a, b in zip(row, theirs[i], strict=True))


def _own_choice_scores(world: World) -> list[list[float]]:
    m, tok = world.loaded.model, world.loaded.tokenizer
    scored = choice_loglikelihoods(m, tok, [r["prompt"] for r in world.rows], [r["choices"] for r in world.rows])
    return [s.loglikelihoods for s in scored]


def _own_accuracy(world: World, kind: str) -> float:
    spec = SuiteSpec(path=str(world.data), kind=kind, max_new_tokens=4, stop=["\n"])  # type: ignore[arg-type]
    suite = load_suite("facts", spec)
    return evaluate_suite(world.loaded.model, world.loaded.tokenizer, suite, version="base@1").score


def test_lm_eval_scores_through_the_gateway_what_loopgate_scores(world: World) -> None:
    out = world.lm_eval(["loopgate_facts_mc", "loopgate_facts_gen"], batch_size=8)
    theirs = _loglikelihoods(out["samples"]["loopgate_facts_mc"])
    ours = _own_choice_scores(world)
    assert sorted(theirs) == list(range(len(world.rows)))
    print(f"lm-eval vs engine log-likelihoods: worst relative difference {_worst_relative(ours, theirs):.2e}")
    assert _worst_relative(ours, theirs) < 1e-6, _worst_relative(ours, theirs)
    acc = out["results"]["loopgate_facts_mc"]["acc,none"]
    assert acc == pytest.approx(_own_accuracy(world, "choice"), abs=1e-12)
    assert acc >= 0.9  # chance is 0.25: a wrong echo offset could not score this
    em = out["results"]["loopgate_facts_gen"]["exact_match,none"]
    assert em == pytest.approx(_own_accuracy(world, "generation"), abs=1e-12) and em >= 0.9
    answers = [s["filtered_resps"][0] for s in sorted(out["samples"]["loopgate_facts_gen"], key=lambda s: s["doc_id"])]
    assert sum(a == r["target"] for a, r in zip(answers, world.rows, strict=True)) == round(em * len(world.rows))
    # lm-eval's batches of 8 prompts were answered in batches, not one request at a time
    assert max(world.server.gateway.servers["base@1"].stats.sizes) > 1


def test_tokenized_requests_score_the_same(world: World) -> None:
    """``tokenized_requests=True``: prompts travel as token-id lists and are scored as sent."""
    out = world.lm_eval(["loopgate_facts_mc"], batch_size=16, tokenized_requests=True)
    theirs = _loglikelihoods(out["samples"]["loopgate_facts_mc"])
    ours = _own_choice_scores(world)
    assert _worst_relative(ours, theirs) < 1e-6, _worst_relative(ours, theirs)
    assert out["results"]["loopgate_facts_mc"]["acc,none"] == pytest.approx(_own_accuracy(world, "choice"))
