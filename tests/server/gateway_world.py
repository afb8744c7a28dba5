"""The gateway tests' world: tiny char-level models that memorised (or mis-memorised) 24 facts, cached on disk.

``word?`` → one letter. The *good* model answers every fact right; the *bad* one was trained on wrong answers
(each fact's letter shifted), the canary that production feedback must catch. Both tokenizers carry a chat
template (the user's messages, concatenated), so chat requests render through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from seed import SEED

WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "candle", "forest", "rocket", "mirror",
         "garden", "pencil", "bridge", "castle", "violin", "carpet", "window", "saddle", "marble", "button",
         "ladder", "kettle", "anchor"]
LETTERS = "xyzw"
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "tests" / ".cache"
DIMS = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128, "max_positions": 64}


SMOKE = 4  # the line's own suite holds the first SMOKE facts; the bad model knows those, and only those, right


def facts(shift: int = 0) -> list[tuple[str, str]]:
    """(prompt, answer) for every word; ``shift`` ≠ 0 gives every word after the first SMOKE a wrong letter
    (a canary that passes the release gates and fails in production)."""
    return [(f"{w}?", LETTERS[(i + (shift if i >= SMOKE else 0)) % len(LETTERS)]) for i, w in enumerate(WORDS)]


def traffic() -> list[tuple[str, str]]:
    """The prompts production sees, with their right answers: the facts no suite covers."""
    return facts()[SMOKE:]


def _train(out: Path, shift: int, seed: int) -> None:
    from loopgate.models import TinyConfig, build_tiny_model, save_model, set_threads

    set_threads(1)
    model, tok = build_tiny_model(TinyConfig(seed=seed, **DIMS))
    tok.chat_template = CHAT_TEMPLATE
    seqs, labels = [], []
    for p, a in facts(shift):
        ids_p = tok(p)["input_ids"]
        ids_a = tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        seqs.append(ids_p + ids_a)
        labels.append([-100] * len(ids_p) + ids_a)
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    lab = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, (s, lb) in enumerate(zip(seqs, labels, strict=True)):
        ids[r, : len(s)], lab[r, : len(s)], mask[r, : len(s)] = torch.tensor(s), torch.tensor(lb), 1
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    save_model(model, tok, out)


def model(kind: str) -> Path:
    """The cached ``good``, ``good2`` (another seed) or ``bad`` model folder."""
    shift, seed = {"good": (0, 1), "good2": (0, 2), "bad": (1, 3)}[kind]
    key = hashlib.sha256(json.dumps({"shift": shift, "seed": seed + 10 * SEED, "dims": DIMS, "torch": torch.__version__,
                                     "src": (Path(__file__)).read_text(),
                                     "tiny": (ROOT / "loopgate/models/tiny.py").read_text()}).encode()).hexdigest()
    out = CACHE / f"gateway-{kind}-{key[:16]}"
    if (out / "DONE").exists():
        return out
    tmp = CACHE / f"gateway-{kind}-{key[:16]}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    _train(tmp, shift, seed + 10 * SEED)
    (tmp / "DONE").write_text("")
    if not (out / "DONE").exists():
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


SPEC = """\
name: gateway-world
suites:
  smoke:
    path: suites/smoke.jsonl
    max_new_tokens: 4
recipes:
  fix:
    method: sft
    steps: 40
    batch_size: 20
    lr: 0.001
lines:
  base:
    tier: foundation
    recipe: fix
    suites: [smoke]
  plain:
    tier: foundation
    description: an untrained model whose tokenizer has no chat template
  helper:
    tier: app
    parent: base
    app: {prompt_template: "{input}", max_new_tokens: 4}
policy:
  defaults:
    release: {canary: true, canary_weight: 0.5}
    canary: {min_samples: 20, max_error_rate_increase: 0.1, max_slow_rate_increase: 0.5, failure_limit: 3}
    regression: {min_examples: 1}
    inheritance: {min_examples: 1}
    plasticity: {probe_steps: 1}
    cost: {max_latency_p95_ratio: null, max_cost_per_1k_ratio: null, max_param_growth: null,
           max_mean_output_length_ratio: null}
"""

_TEMPLATE: dict[str, Path] = {}


def template_workspace(root: Path) -> Path:
    """A workspace whose ``base`` line has released the good model (base@1, production), built once per
    session under ``root`` (later calls return the first one's folder)."""
    if "ws" in _TEMPLATE:
        return _TEMPLATE["ws"]
    from loopgate import loop
    from loopgate.loop.workspace import Workspace

    ws_dir = root / "template"
    (ws_dir / "suites").mkdir(parents=True)
    (ws_dir / "suites" / "smoke.jsonl").write_text("".join(
        json.dumps({"id": f"s{i}", "prompt": p, "target": a}) + "\n" for i, (p, a) in enumerate(facts()[:SMOKE])))
    ws, _ = Workspace.init(ws_dir, SPEC)
    loop.register_model(ws, "base", model("good"))
    out = loop.release(ws, "base@1", actor="alice")
    assert out.released and ws.store.channel("base", "production") == "base@1", out.decision.gates
    from loopgate.models import TinyConfig, build_tiny_model, save_model

    untrained, tok = build_tiny_model(TinyConfig(seed=0, **DIMS))
    loop.register_model(ws, "plain", save_model(untrained, tok, root / "plain-model"))
    assert loop.release(ws, "plain@1", actor="alice").released
    ws.store.close()
    _TEMPLATE["ws"] = ws_dir
    return ws_dir


def copy_workspace(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest)
    return dest


class Server:
    """A real uvicorn server on 127.0.0.1 (a free port), in a thread, serving a workspace's gateway."""

    def __init__(self, ws_dir: Path, **settings: object) -> None:
        import socket
        import threading

        import uvicorn

        from loopgate.loop.workspace import Workspace
        from loopgate.server import create_app
        from loopgate.server.gateway import GatewaySettings, router

        self.ws = Workspace.open(ws_dir)
        app = create_app(ws_dir, gateway=False, api=False, dashboard=False)
        self.router = router(self.ws, GatewaySettings(**settings))  # type: ignore[arg-type]
        app.include_router(self.router)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    @property
    def gateway(self):  # type: ignore[no-untyped-def]
        return self.router.gateway

    def client(self, key: str | None = "none"):  # type: ignore[no-untyped-def]
        from openai import OpenAI

        return OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=60)

    def post(self, path: str, body: bytes | dict[str, object], key: str | None = None) -> tuple[int, dict[str, object]]:
        """A raw POST (what the openai client cannot send: bad JSON, feedback)."""
        import urllib.error
        import urllib.request

        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {key}"} if key else {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.ws.store.close()
