"""Evaluation through a backend (#22 item 3): a version scored through the server that serves its line gives the
same greedy answers as the engine on its weights, and is recorded as an evaluation through that upstream, apart
from the in-process one (its own suite identity, so registry and cache keys differ).

The upstream is a real ``loopgate serve`` gateway (uvicorn in a thread, its own workspace) serving the gateway
world's bad model (right on 4 facts, wrong on 20) as ``base:canary``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from server.gateway_world import WORDS, Server, copy_workspace, facts, model, template_workspace

from loopgate import loop
from loopgate.loop.workspace import Workspace


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """(the upstream, a front workspace whose base@2 is the upstream's base:canary, with a 24-fact suite)."""
    up_dir = copy_workspace(template_workspace(tmp_path / "template"), tmp_path / "upstream")
    ws = Workspace.open(up_dir)
    loop.register_model(ws, "base", model("bad"))
    assert loop.release(ws, "base@2", actor="alice").released
    ws.store.close()
    upstream = Server(up_dir, require_keys=False, burst=10_000)
    front = copy_workspace(template_workspace(tmp_path / "template"), tmp_path / "front")
    (front / "suites" / "facts.jsonl").write_text("".join(
        json.dumps({"id": f"f{i}", "prompt": p, "target": a}) + "\n" for i, (p, a) in enumerate(facts())))
    spec = yaml.safe_load((front / "loopgate.yaml").read_text())
    spec["suites"]["facts"] = {"path": "suites/facts.jsonl", "max_new_tokens": 4}
    spec["lines"]["base"]["suites"].append("facts")
    spec["lines"]["base"]["serving"] = {"base_url": upstream.url, "models": {"base@2": "base:canary"}}
    (front / "loopgate.yaml").write_text(yaml.safe_dump(spec))
    ws = Workspace.open(front)
    loop.register_model(ws, "base", model("bad"))
    ws.store.close()
    yield upstream, front
    upstream.stop()


def test_an_evaluation_through_the_upstream_equals_the_in_process_one_and_says_so(
        served: tuple[Server, Path], cli: Callable[..., Any]) -> None:
    upstream, front = served
    ws = Workspace.open(front)
    local = loop.evaluate_line_suites(ws, "base@2", ["facts"])["facts"]
    through = loop.evaluate_line_suites(ws, "base@2", ["facts"], through_upstream=True)["facts"]
    assert len(through.examples) == len(WORDS) == 24
    assert [e.output for e in through.examples] == [e.output for e in local.examples]  # same greedy answers
    assert [e.correct for e in through.examples] == [e.correct for e in local.examples]
    assert sum(e.correct for e in local.examples) == 4 and through.score == local.score  # not all right, not all wrong
    assert through.upstream == f"base:canary at {upstream.url}" and local.upstream == ""
    assert through.suite_sha256 != local.suite_sha256 and through.device == "upstream"
    # both recorded, apart: the upstream's answers came from its log, not from the front's engine
    recorded = {e.upstream for e in ws.store.evaluations("base@2") if e.suite == "facts"}
    assert recorded == {"", through.upstream}
    upstream.gateway.flush()
    from loopgate.store import gateway as gw

    assert len([r for r in gw.requests(upstream.ws.store, "base@2") if r.ok]) == 24
    ws.store.close()

    # the CLI returns the recorded evaluation (no second round of requests); a line with no upstream is exit 2
    shown = cli("evaluate", "base@2", "--suite", "facts", "--through-upstream", "--json", workspace=front)
    assert shown.code == 0 and shown.json()[0]["upstream"] == through.upstream
    assert shown.json()[0]["score"] == through.score
    upstream.gateway.flush()
    assert len(gw.requests(upstream.ws.store, "base@2")) == 24
    refused = cli("evaluate", "plain@1", "--through-upstream", workspace=front)
    assert refused.code == 2 and "no 'serving:' section" in refused.err
