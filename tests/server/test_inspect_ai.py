"""inspect_ai 0.3.285 scores a chat-template version through a live gateway exactly as Loopgate scores it.

inspect_ai's ``openai-api/<service>/<model>`` provider speaks chat completions to any OpenAI-compatible URL
(``<SERVICE>_BASE_URL``, ``<SERVICE>_API_KEY``); its ``openai/<model>`` provider defaults to the Responses API,
which the gateway does not serve: that run fails on the gateway's 404 naming chat completions, and
``responses_api=False`` makes it work. Some rows carry a wrong target, so the score is neither 0 nor 1 and a
per-row disagreement would show.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_world import Server, copy_workspace, facts, template_workspace

from loopgate.evaluate.engine import evaluate_suite
from loopgate.evaluate.suites import load_suite
from loopgate.loop.versions import version_ref
from loopgate.models import load_model
from loopgate.spec import SuiteSpec

WRONG = 8  # the last WRONG rows' targets are another fact's letter: the model answers them "wrong"


def _rows() -> list[tuple[str, str]]:
    rows = facts()
    return rows[:-WRONG] + [(p, rows[(i + 1) % len(rows)][1]) for i, (p, _) in enumerate(rows[-WRONG:])]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("inspect")
    server = Server(copy_workspace(template_workspace(root / "t"), root / "ws"), require_keys=False)
    saved = {k: os.environ.get(k) for k in ("LOOPGATE_API_KEY", "LOOPGATE_BASE_URL", "OPENAI_API_KEY")}
    os.environ.update({"LOOPGATE_API_KEY": "unused", "LOOPGATE_BASE_URL": server.url, "OPENAI_API_KEY": "unused"})
    yield server, root
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _inspect(root: Path, model: str, **kw: Any) -> Any:
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import exact
    from inspect_ai.solver import generate

    task = Task(dataset=[Sample(input=p, target=a) for p, a in _rows()], solver=generate(), scorer=exact())
    return inspect_eval(task, model=model, max_tokens=4, display="none", log_dir=str(root / "logs"), **kw)[0]


def _own_score(server: Server, root: Path) -> float:
    """Loopgate's evaluation of the same rows as chat messages (through the version's chat template)."""
    path = root / "chat.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "messages": [{"role": "user", "content": p}],
                                        "target": a}) + "\n" for i, (p, a) in enumerate(_rows())))
    suite = load_suite("chat", SuiteSpec(path=str(path), max_new_tokens=4))
    loaded = load_model(version_ref(server.ws, "base@1"))
    return evaluate_suite(loaded.model, loaded.tokenizer, suite, version="base@1").score


def test_inspect_ai_scores_what_loopgate_scores(world: tuple[Server, Path]) -> None:
    server, root = world
    log = _inspect(root, "openai-api/loopgate/base")
    assert log.status == "success", log.error
    score = log.results.scores[0].metrics["mean"].value
    own = _own_score(server, root)
    assert score == pytest.approx(own, abs=1e-12)
    assert score == pytest.approx((len(_rows()) - WRONG) / len(_rows()))  # every fact right, every trap wrong
    answers = {s.input: s.output.completion for s in log.samples}
    assert [answers[p] for p, _ in facts()] == [a for _, a in facts()]


def test_the_openai_provider_needs_chat_completions(world: tuple[Server, Path]) -> None:
    server, root = world
    failed = _inspect(root, "openai/base", model_base_url=server.url)  # inspect's default: the Responses API
    assert failed.status == "error" and "/v1/chat/completions" in failed.error.message, failed.error
    log = _inspect(root, "openai/base", model_base_url=server.url, model_args={"responses_api": False})
    assert log.status == "success", log.error
    assert log.results.scores[0].metrics["mean"].value == pytest.approx(_own_score(server, root), abs=1e-12)
