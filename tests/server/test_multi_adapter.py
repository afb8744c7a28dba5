"""Many adapters on one base (#22): three adapter lines served by one loaded base over real HTTP, mixed batches
that answer each row exactly as its adapter merged into its own copy of the base does, and the LRU under a
budget smaller than the adapters."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from gateway_world import Server

from loopgate import loop
from loopgate.loop.versions import version_ref
from loopgate.loop.workspace import Workspace
from loopgate.models import load_model
from loopgate.server.gateway.adapters import AdapterServer
from loopgate.server.gateway.decoding import Job, answer
from loopgate.server.gateway.scoring import score_prompts

LINES = ("alpha", "beta", "gamma")
SPEC = "name: multi\nlines:\n  base:\n    tier: foundation\n" + "".join(
    f"  {n}:\n    tier: industrial\n    parent: base\n" for n in LINES) + """\
policy:
  defaults:
    plasticity: {probe_steps: 1}
    cost: {max_latency_p95_ratio: null, max_cost_per_1k_ratio: null, max_param_growth: null,
           max_mean_output_length_ratio: null}
"""
PROMPTS = ["hello there", "tell me", "abc?", "why not", "xyz", "one two"]
ADAPTER_BYTES = 2 * 2 * (4 * 32 + 32 * 4) * 4  # 2 layers × q,v × (A + B) of rank 4 on width 32, float32


def _adapter(base_dir: Path, out: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # random, not zero, B matrices: each adapter really changes the answers
    model = get_peft_model(load_model(base_dir).model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                  init_lora_weights=False))
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    root = tmp_path_factory.mktemp("multi")
    ws, _ = Workspace.init(root / "ws", SPEC)
    versions = {"base": loop.register_model(ws, "base", tiny_model_dir).id}
    for i, line in enumerate(LINES):
        adapter = _adapter(tiny_model_dir, root / f"adapter-{line}", seed=100 + i)
        versions[line] = loop.register_model(ws, line, adapter, base=versions["base"]).id
    for v in versions.values():
        out = loop.release(ws, v, actor="alice", propagate=False)
        assert out.released, out.decision.gates
    ws.store.close()
    # a budget of 1.5 adapters: a mixed batch of three goes over it, then the least recently used go out
    server = Server(root / "ws", require_keys=False, burst=10_000, max_wait_ms=100.0,
                    adapter_memory_mb=1.5 * ADAPTER_BYTES / 2**20)
    yield server, versions
    server.stop()


def _merged_answers(ws: Workspace, version: str) -> tuple[list[str], list[list[float | None]]]:
    """What the existing per-version path answers: the adapter merged into its own copy of the base."""
    loaded = load_model(version_ref(ws, version))
    jobs = [Job(tuple(loaded.tokenizer(p)["input_ids"]), 6) for p in PROMPTS]
    texts = [c[0].text for c in answer(loaded.model, loaded.tokenizer, jobs)]
    scores = [s.logprobs for s in score_prompts(loaded.model, [j.prompt_ids for j in jobs], 1)]
    return texts, scores


def _ask(server: Server, line: str, prompt: str) -> str:
    status, body = server.post("/completions", {"model": line, "prompt": prompt, "max_tokens": 6})
    assert status == 200, body
    return str(body["choices"][0]["text"])  # type: ignore[index]


def _score(server: Server, line: str, prompt: str) -> list[float | None]:
    status, body = server.post("/completions", {"model": line, "prompt": prompt, "max_tokens": 0, "echo": True,
                                                "logprobs": 1})
    assert status == 200, body
    return list(body["choices"][0]["logprobs"]["token_logprobs"])  # type: ignore[index]


def test_adapter_lines_share_one_base_and_mixed_batches_equal_each_adapter_merged(
        world: tuple[Server, dict[str, str]]) -> None:
    server, versions = world
    want = {line: _merged_answers(server.ws, versions[line]) for line in (*LINES, "base")}
    assert len({tuple(w[0]) for w in want.values()}) == 4, "the adapters must answer differently to prove anything"
    asks = [(line, i) for i in range(len(PROMPTS)) for line in LINES]
    with ThreadPoolExecutor(len(asks)) as pool:  # all at once: the shared base batches them across adapters
        got = list(pool.map(lambda a: _ask(server, a[0], PROMPTS[a[1]]), asks))
        scored = list(pool.map(lambda a: _score(server, a[0], PROMPTS[a[1]]), asks))
    for (line, i), text, lps in zip(asks, got, scored, strict=True):
        assert text == want[line][0][i], (line, PROMPTS[i])
        assert lps[0] is None and want[line][1][i][0] is None
        assert lps[1:] == pytest.approx(want[line][1][i][1:], abs=1e-4), (line, PROMPTS[i])
    # the base's own line, asked now that its folder is a shared base, is answered from it (rows on "__base__")
    assert [_ask(server, "base", p) for p in PROMPTS] == want["base"][0]

    gw = server.gateway
    handles = [gw.servers[versions[n]] for n in (*LINES, "base")]
    assert all(isinstance(h, AdapterServer) for h in handles)
    [shared] = gw.bases.servers()  # one loaded base for the four versions, no full copy next to it
    assert all(h.base is shared for h in handles)  # type: ignore[attr-defined]
    model = shared.shared.model
    base_params = sum(p.numel() for p in load_model(server.ws.store.checkout(versions["base"])).model.parameters())
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n) == base_params  # never merged
    assert not any(p.requires_grad for p in model.parameters())
    assert max(shared.mixed) >= 2, shared.mixed  # at least one batch held rows of two adapters or more


def test_lru_unloads_under_the_budget_and_reloads_the_same_answers(world: tuple[Server, dict[str, str]]) -> None:
    server, versions = world
    before = {line: _ask(server, line, PROMPTS[0]) for line in LINES}
    [shared] = server.gateway.bases.servers()
    base = shared.shared
    loads, unloads = base.loads, base.unloads
    for line in (*LINES, *LINES):  # one at a time: each needs the adapter the previous one pushed out
        assert _ask(server, line, PROMPTS[0]) == before[line]
    assert base.loads - loads == 6, (base.sizes, base.budget_bytes, base.loads)
    assert base.unloads - unloads >= 5
    assert len(base.sizes) == 1 and base.adapter_bytes <= base.budget_bytes  # type: ignore[operator]
    assert base.adapter_bytes == ADAPTER_BYTES
    assert set(base.model.peft_config) == set(base.sizes)  # unloaded from peft too, not only from the books
