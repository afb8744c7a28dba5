"""Generated malformed inputs on every surface a user can hand Loopgate something (issue 20, item 1): the
spec file, update data, command-line arguments and the REST API. Each must be a clean refusal — exit 2 with one
paragraph and no traceback, or a 4xx with a JSON error body, never a 500 — within a bounded time, and must leave
the registry as it was: no new version, no started run, no ledger entry (except ``channel.refused`` where a
channel move was attempted).

Each test walks its whole table in one process (the CLI in-process, the API through TestClient), collects every
case that misbehaves, and fails once listing them all; conftest.py prints how many inputs each surface tried."""

from __future__ import annotations

import io
import json
import math
import random
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from decided import release

Cli = Callable[..., Any]

PER_INPUT_S = 10  # far above any one refusal (tens of ms); past it the input counts as a hang
GENERATED = 150  # random cases per surface on top of the tables, from a fixed seed (the same every run)
# characters a generated string draws from: ASCII, the separators ids use, controls, invisible and
# direction-changing characters, non-ASCII digits and letters, a lone surrogate
ALPHABET = ("abcxyz019@-_./ %\\\"'" + "\x00\x07\t\n\r\x1b\x7f" + "\u200b\u200d\u202e\ufeff\u0301"
            + "²١１é中\U0001f600" + "\ud800\udfff")

# inputs that misbehave in product code today (surface, a piece of the case's text), each reported with its
# finding; they still run, but their failures are counted against the entry instead of failing the test
KNOWN: list[tuple[str, str]] = [  # reported, to fix (empty: every case found so far is fixed)
]


class Hang(Exception):
    pass


@contextmanager
def bounded(seconds: float = PER_INPUT_S) -> Iterator[None]:
    """Raise Hang in the main thread if the block runs past ``seconds`` (in-process calls cannot be killed)."""
    def stop(_sig: int, _frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def random_text(rng: random.Random, max_size: int = 40) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, max_size)))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value: scalars of every type (odd floats and huge ints included), lists and objects."""
    kind = rng.randrange(8 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, -(2**64), 10**30, rng.randint(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, 5e-324, rng.uniform(-1e6, 1e6)])
    if kind in (4, 5):
        return random_text(rng, 12)
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {random_text(rng, 6): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def invalid_row(rng: random.Random) -> Any:
    """A row no update method accepts: not an object, no completion, or a completion that is not a string."""
    pick = rng.randrange(3)
    if pick == 0:
        value = random_json(rng)
        return value if not isinstance(value, dict) else [value]
    if pick == 1:
        return {rng.choice(["prompt", "text", "x", "Prompt"]): random_json(rng) for _ in range(rng.randint(0, 3))}
    completion = random_json(rng)
    return {"prompt": random_text(rng, 10), "completion": completion if not isinstance(completion, str) else [1]}


# ------------------------------------------------------------------------------------------ registry state


def snapshot(store: Any) -> tuple[int, int, list[str]]:
    """What an input must not change: versions, ledger length, started steps."""
    return len(store.all_versions()), len(store.ledger()), sorted(k for k, _ in store.open_steps("started"))


def registry_changes(store: Any, before: tuple[int, int, list[str]], *, moves: bool = False,
                     allowed: tuple[str, ...] = ()) -> str | None:
    """What changed since ``before`` (None when nothing did); ``moves``: ``channel.refused`` entries are allowed,
    as are entries of the kinds in ``allowed``."""
    versions, entries, steps = snapshot(store)
    if versions != before[0]:
        return f"versions {before[0]} -> {versions}"
    if steps != before[2]:
        return f"started steps {before[2]} -> {steps}"
    if entries != before[1]:
        new = [e.kind for e in store.ledger()[before[1]:]]
        ok = set(allowed) | ({"channel.refused"} if moves else set())
        if not all(k in ok for k in new):
            return f"ledger grew by {new}"
    return None


class Findings:
    """Cases that were not a clean refusal, gathered so one run lists them all. A case that KNOWN covers is
    counted against its entry instead (it still runs, so an entry whose bug was fixed shows in the summary)."""

    def __init__(self, surface: str, report: Any) -> None:
        self.surface, self.report = surface, report
        self.items: list[str] = []
        for entry in KNOWN:
            if entry[0] == surface:
                report.known.setdefault(entry, 0)

    def tried(self) -> None:
        self.report.inputs[self.surface] += 1

    def add(self, case: str, problem: str) -> None:
        for entry in KNOWN:
            if entry[0] == self.surface and entry[1] in case:
                self.report.known[entry] += 1
                return
        self.items.append(f"[{self.surface}] {case}: {problem}")

    def check(self) -> None:
        assert not self.items, f"{len(self.items)} inputs not cleanly refused:\n" + "\n".join(self.items[:60])


def last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


def cli_problem(res: Any, *, ok: bool = False) -> str | None:
    """Why ``res`` is not a clean refusal (exit 2, one paragraph, no traceback); ``ok``: exit 0 is fine too."""
    if "Traceback" in res.err or "Traceback" in res.out:
        return f"traceback, exit {res.code}: {last_line(res.err + res.out)}"
    if res.code == 0 and ok:
        return None
    if res.code != 2:
        return f"exit {res.code} (want 2): {last_line(res.err) or last_line(res.out)}"
    text = res.err.strip()
    if not text:
        return "exit 2 with nothing on stderr"
    if "\n\n" in text and not text.startswith("Usage:"):  # the CLI framework's usage error: usage, blank, error
        return f"more than one paragraph: {text[:200]!r}"
    if len(text) > 10_000:
        return f"a {len(text)}-character message (the input echoed?): {text[:120]!r}"
    return None


def run_cli(cli: Cli, ws: Any, argv: tuple[Any, ...], found: Findings, *, ok: bool = False,
            moves: bool = False) -> None:
    """One CLI case: bounded time, a clean refusal, the registry unchanged."""
    case = repr(argv)
    found.tried()
    before = snapshot(ws.store)
    try:
        with bounded():
            res = cli(*argv, "--workspace", ws.root)
    except Hang as e:
        found.add(case, str(e))
        return
    except BaseException as e:  # noqa: BLE001 — an escaping exception is the finding
        found.add(case, f"raised {type(e).__name__}: {str(e)[:200]}")
        return
    # a spec that turned out valid registers its new lines when opened (exit 0): that is the spec, not the input
    problem = cli_problem(res, ok=ok) or registry_changes(ws.store, before, moves=moves,
                                                          allowed=("line.register",) if res.code == 0 else ())
    if problem:
        found.add(case, problem)


@pytest.fixture
def cli() -> Cli:
    """``loopgate ARGS`` in-process, its output through streams that encode as a real process's do: stdout
    strict UTF-8, stderr with backslash escapes (pytest's capture is strict on both, which would turn a lone
    surrogate in an error message into a failure the real command does not have)."""
    from loopgate.cli import main

    def run(*argv: Any) -> SimpleNamespace:
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", newline="")
        err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", newline="")
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main([str(a) for a in argv])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
            out.flush()
            err.flush()
        text = [s.buffer.getvalue().decode("utf-8", "replace") for s in (out, err)]  # type: ignore[attr-defined]
        return SimpleNamespace(code=code, out=text[0], err=text[1])

    return run


# ------------------------------------------------------------------------------------------ workspaces


@pytest.fixture
def shipped(workspace: Any, tiny_model_dir: Path, cli: Cli) -> Any:
    """base@1 registered and in production, a valid suite and a valid update file (data/good.jsonl)."""
    assert cli("register", "base", "--model", tiny_model_dir, "--workspace", workspace.root).code == 0
    release(workspace.store, [("base", "production", "base@1")], kind="release", reason="t", actor="t")
    suite = workspace.root / "suites" / "reversal.jsonl"
    suite.parent.mkdir(parents=True, exist_ok=True)
    suite.write_text("".join(json.dumps({"id": w, "prompt": f"reverse: {w}\n=>", "target": w[::-1]}) + "\n"
                             for w in ("abc", "dog", "sun")), encoding="utf-8")
    good = workspace.root / "data" / "good.jsonl"
    good.parent.mkdir(parents=True, exist_ok=True)
    good.write_text(json.dumps({"prompt": "reverse: abc\n=>", "completion": "cba"}) + "\n", encoding="utf-8")
    return workspace


# ------------------------------------------------------------------------------------------ 1. loopgate.yaml

BAD_VALUES: list[Any] = [math.inf, -math.inf, math.nan, -1, 0, 10**30, -(10**30), 1.5, "x", "", "a" * 200, "../x",
                         "\x00", None, True, [], {}, [1, [2]], {"k": "v"}]
SPEC_PATHS = ["name", "suites", "suites.reversal", "suites.reversal.path", "suites.reversal.max_new_tokens",
              "suites.reversal.stop", "suites.reversal.kind", "recipes", "recipes.domain-sft",
              "recipes.domain-sft.method", "recipes.domain-sft.steps", "recipes.domain-sft.lr",
              "recipes.domain-sft.seed", "recipes.domain-sft.batch_size", "lines", "lines.base", "lines.base.tier",
              "lines.support.parent", "lines.support.recipe", "lines.support.suites", "lines.helpdesk.app",
              "lines.helpdesk.app.prompt_template"]
BAD_NAMES = ["../x", "", "a" * 200, "\x00", "a/b", "a b", "support@1", ".", "-", "UPPER", "é", "a\u200bb", "1"]


def set_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    *parents, leaf = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    node[leaf] = value
    return out


def spec_mutations(spec: str) -> Iterator[tuple[str, str]]:
    """(what was done, the spec text) for every mutation of ``spec`` (the workspace's SMALL_SPEC)."""
    doc = yaml.safe_load(spec)
    for path in SPEC_PATHS:
        for value in BAD_VALUES:
            yield f"{path}={value!r}", yaml.safe_dump(set_path(doc, path, value), allow_unicode=True)
    for path in ["", "suites.reversal", "recipes.domain-sft", "lines.support", "lines.helpdesk.app"]:
        for key in ["zzz", "", "\x00", "Steps"]:
            node = json.loads(json.dumps(doc))
            target = node
            for k in [p for p in path.split(".") if p]:
                target = target[k]
            target[key] = 1
            yield f"unknown key {key!r} in {path or 'top'}", yaml.safe_dump(node, allow_unicode=True)
    for name in BAD_NAMES:
        node = json.loads(json.dumps(doc))
        node["lines"][name] = {"tier": "application", "parent": "support"}
        yield f"line named {name!r}", yaml.safe_dump(node, allow_unicode=True)
        node = json.loads(json.dumps(doc))
        node["lines"]["billing"]["parent"] = name
        yield f"parent {name!r}", yaml.safe_dump(node, allow_unicode=True)
        node = json.loads(json.dumps(doc))
        node["suites"][name] = {"path": "suites/x.jsonl"}
        node["lines"]["support"]["suites"] = [name]
        yield f"suite named {name!r}", yaml.safe_dump(node, allow_unicode=True)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    raw = {
        "duplicate top key": spec + "name: again\n",
        "duplicate line": spec + "  base:\n    tier: foundation\n",
        "alias bomb at top": bomb + spec,
        "alias bomb in a value": bomb + spec.replace("steps: 5", "steps: *i"),
        "alias bomb as stop": bomb + spec.replace("path: suites/reversal.jsonl",
                                                        "path: suites/reversal.jsonl\n    stop: *i"),
        "recursive alias": "x: &x [*x]\n" + spec,
        "tab indent": spec.replace("  base:", "\tbase:"),
        "unclosed flow": "name: [\n",
        "empty": "",
        "only a comment": "# nothing\n",
        "null": "null\n",
        "a list": "- a\n- b\n",
        "a number": "42\n",
        "a string": "hello\n",
        "deep nesting": "name: " + "[" * 5000 + "]" * 5000 + "\n",
        "huge document": spec + "".join(f"# {'x' * 100}\n" for _ in range(20_000)),
        "python tag": spec + "x: !!python/object/apply:os.system ['true']\n",
        "binary tag": spec.replace("name: test-eco", "name: !!binary aGVsbG8="),
        "timestamp name": spec.replace("name: test-eco", "name: 2026-01-01"),
        "merge key": "x: &x {tier: foundation}\n" + spec.replace("  base:\n    tier: foundation",
                                                                        "  base:\n    <<: *x\n    <<: *x"),
        "complex key": spec + "? [a, b]\n: 1\n",
        "bom twice": "\ufeff\ufeff" + spec,
        "NUL byte": spec.replace("test-eco", "test\x00eco"),
        "lone surrogate": spec.replace("test-eco", '"\\ud800"'),
        "two documents": spec + "---\n" + spec,
        "self parent": spec.replace("parent: base", "parent: support"),
        "parent cycle": spec.replace("  base:\n    tier: foundation", "  base:\n    tier: foundation\n"
                                           "    parent: billing"),
    }
    yield from raw.items()


def test_spec_mutations_are_refused_cleanly(shipped: Any, cli: Cli, fuzz_report: Any) -> None:
    found = Findings("loopgate.yaml", fuzz_report)
    spec = shipped.root / "loopgate.yaml"
    original = spec.read_text(encoding="utf-8")
    for what, text in spec_mutations(original):
        spec.write_text(text, encoding="utf-8", errors="surrogatepass")
        # a mutation may still be a valid spec (exit 0); what may never happen is a crash or a change
        run_cli(cli, shipped, ("status",), Findings_for(found, what), ok=True)
        run_cli(cli, shipped, ("plan", "base@1"), Findings_for(found, what), ok=True)
    spec.write_text(original, encoding="utf-8")
    found.check()


class Findings_for(Findings):  # noqa: N801 — reads as a phrase at the call site
    """A view of ``Findings`` that prefixes each case with the mutation that made it."""

    def __init__(self, parent: Findings, what: str) -> None:
        self.parent, self.what = parent, what
        self.surface, self.report, self.items = parent.surface, parent.report, parent.items

    def add(self, case: str, problem: str) -> None:
        self.parent.add(f"{self.what!r} {case}", problem)


# ------------------------------------------------------------------------------------------ 2. update data

BAD_DATA: dict[str, bytes] = {
    "empty": b"",
    "blank lines": b"\n\n  \n",
    "bom only": b"\xef\xbb\xbf",
    "not json": b"hello\n",
    "unclosed object": b'{"prompt": "a", "completion": "b"\n',
    "trailing comma": b'{"prompt": "a", "completion": "b",}\n',
    "single quotes": b"{'prompt': 'a', 'completion': 'b'}\n",
    "array row": b'["a", "b"]\n',
    "string row": b'"a"\n',
    "number row": b"1\n",
    "null row": b"null\n",
    "missing completion": b'{"prompt": "a"}\n',
    "missing prompt": b'{"completion": "a"}\n',
    "prompt a number": b'{"prompt": 1, "completion": "b"}\n',
    "completion a list": b'{"prompt": "a", "completion": ["b"]}\n',
    "completion null": b'{"prompt": "a", "completion": null}\n',
    "completion nested": b'{"prompt": "a", "completion": {"x": {"y": "z"}}}\n',
    "prompt NaN": b'{"prompt": NaN, "completion": "b"}\n',
    "prompt Infinity": b'{"prompt": Infinity, "completion": "b"}\n',
    "huge number": b'{"prompt": 1' + b"0" * 5000 + b', "completion": "b"}\n',
    "1e999": b'{"prompt": 1e999, "completion": "b"}\n',
    "lone surrogate escape": b'{"prompt": "\\ud800", "completion": "b"}\n',
    "lone low surrogate": b'{"prompt": "a", "completion": "\\udfff"}\n',
    "surrogate as utf-8 bytes": b'{"prompt": "\xed\xa0\x80", "completion": "b"}\n',
    "invalid utf-8": b'{"prompt": "\xff\xfe", "completion": "b"}\n',
    "overlong utf-8": b'{"prompt": "\xc0\xaf", "completion": "b"}\n',
    "truncated utf-8": b'{"prompt": "a", "completion": "\xe2\x82"}\n',
    "utf-16": '{"prompt": "a", "completion": "b"}\n'.encode("utf-16"),
    "NUL bytes": b'{"prompt": "a\x00", "completion": "b"}\x00\n',
    "deep nesting": b'{"prompt": "a", "completion": "b", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}\n",
    "huge line not json": b"x" * 3_000_000 + b"\n",
    "huge prompt, no completion": b'{"prompt": "' + b"a" * 3_000_000 + b'"}\n',
    "good then bad": b'{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n',
    "good then garbage": b'{"prompt": "a", "completion": "b"}\n\x00\x01\x02\n',
    "messages not a list": b'{"messages": "hi"}\n',
    "messages of numbers": b'{"messages": [1, 2]}\n',
    "messages without roles": b'{"messages": [{"content": "a"}]}\n',
    "messages with a bogus role": b'{"messages": [{"role": "wizard", "content": "a"}]}\n',
    "messages empty": b'{"messages": []}\n',
    "duplicate keys": b'{"prompt": "a", "prompt": 1, "completion": "b"}\n',
    "two objects on a line": b'{"prompt": "a", "completion": "b"} {"prompt": "c", "completion": "d"}\n',
    "CR only line ends": b'{"prompt": "a", "completion": "b"}\r{"prompt": 1}\r',
    "text row on sft": b'{"text": "hello"}\n',
}


def test_bad_update_data_is_refused_before_training(shipped: Any, cli: Cli, fuzz_report: Any,
                                                    tmp_path: Path) -> None:
    found = Findings("update data", fuzz_report)
    data = tmp_path / "d.jsonl"
    for what, raw in BAD_DATA.items():
        data.write_bytes(raw)
        run_cli(cli, shipped, ("update", "support", "--data", data), Findings_for(found, what))

    rng = random.Random(20)
    for _ in range(GENERATED):
        rows = [{"prompt": random_text(rng, 10), "completion": random_text(rng, 10)}
                for _ in range(rng.randint(0, 3))]
        rows.insert(rng.randint(0, len(rows)), invalid_row(rng))
        ascii_only = rng.random() < 0.5
        text = "\n".join(json.dumps(r, ensure_ascii=ascii_only) for r in rows) + "\n"
        data.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        run_cli(cli, shipped, ("update", "support", "--data", data), Findings_for(found, text[:200]))
    found.check()


# ------------------------------------------------------------------------------------------ 3. CLI arguments

BAD_IDS = ["support@²", "x@-1", "@", "a@99999999999999999999", "base@0", "base@-1", "base@1\x00", "\x00",
           "base@" + "9" * 400, "a" * 5000, "base@1.5", "base@1e3", "base@0x1", "base@+1", "base@@1", "base@1@2",
           "BASE@1", "../base@1", "base/../x@1", "base@१", "base@１", "base@1\u200b", "\u200bbase@1", "base@\t1",
           "base@1\n", "%00", "", "nosuch@1", "support@1", "helpdesk@1", "base@ 1", "b\u0301ase@1",
           "\udcff@1", "-", "base@9223372036854775808", "@1", "base@", "base@1/..", "*"]
BAD_USERS = ["\u200b", "da\u200bna", "\x07", "a\nb", "a" * 500, "", " ", "\x00", "\u202e", "dana\x1b[31m",
             "\ufeff", "\t", "\udcff"]
BAD_SEEDS = ["-1", "4294967296", "99999999999999999999999", "1e3", "nan", "0x10", "", " ", "1.5", "²", "inf"]
BAD_CHANNELS = ["bogus", "", "PRODUCTION", "production\x00", "stag ing", "a" * 300, "production ", "\udcff"]
MISC = [
    ("audit", "log", "--limit", "-1"), ("audit", "log", "--limit", "9" * 30), ("audit", "log", "--limit", "x"),
    ("gc", "--keep-latest", "-1", "--dry-run"), ("gc", "--keep-latest", "1e9", "--dry-run"),
    ("runs", "list", "--status", "bogus"), ("runs", "abandon", "nosuch", "--reason", "r"),
    ("runs", "abandon", "\x00", "--reason", "r"), ("token", "revoke", str(2**70)), ("token", "revoke", "-1"),
    ("token", "revoke", "x"), ("key", "revoke", str(2**70)), ("key", "revoke", "-1"),
    ("token", "create", "--role", "god", "--as", "x"), ("token", "create", "--role", "viewer", "--as", ""),
    ("canary", "status", "\x00"), ("canary", "status", "../x"), ("update", "nosuch", "--data", "x.jsonl"),
    ("update", "../x", "--data", "x.jsonl"), ("update", "support", "--data", "/nonexistent/x.jsonl"),
    ("update", "support", "--data", "data/good.jsonl", "--recipe", "\x00"),
    ("update", "support", "--data", "data/good.jsonl", "--recipe", "nosuch"),
    ("evaluate", "base@1", "--suite", "nosuch"), ("evaluate", "base@1", "--suite", "../x"),
    ("compare", "base@1", "nosuch@1"), ("report", "nosuch@1"), ("nosuch-command",), ("--json",),
    ("status", "--workspace"), ("versions",), ("promote",), ("rollback",),
]


def cli_argument_cases(good_data: Path) -> Iterator[tuple[tuple[Any, ...], bool]]:
    """(argv, channel moves attempted) for every generated argument case."""
    for vid in BAD_IDS:
        yield ("lineage", vid), False
        yield ("plan", vid), False
        yield ("release", vid), True
        yield ("promote", vid, "--channel", "staging"), True
        yield ("approve", vid, "--as", "dana", "--reason", "r"), True
        yield ("rollback", "base", "--to", vid, "--reason", "r"), True
        yield ("versions", vid), False
        yield ("channels", vid), False
        yield ("compare", vid, "base@1"), False
    for who in BAD_USERS:
        yield ("approve", "base@1", "--as", who, "--reason", "r"), True
        yield ("promote", "base@1", "--channel", "staging", "--as", who), True
        yield ("rollback", "base", "--as", who, "--reason", "r"), True
        yield ("token", "create", "--role", "viewer", "--as", who), False
    for seed in BAD_SEEDS:
        yield ("update", "support", "--data", good_data, "--seed", seed), False
    for channel in BAD_CHANNELS:
        yield ("promote", "base@1", "--channel", channel), True
    for argv in MISC:
        yield argv, False


def test_bad_cli_arguments_exit_2(shipped: Any, cli: Cli, fuzz_report: Any) -> None:
    found = Findings("cli arguments", fuzz_report)
    for argv, moves in cli_argument_cases(shipped.root / "data" / "good.jsonl"):
        run_cli(cli, shipped, argv, found, moves=moves)

    rng = random.Random(3)
    for _ in range(GENERATED):
        vid = random_text(rng)
        if vid.startswith("-"):
            vid = "x" + vid  # an option, not an id: argparse's own refusal is in the table above
        command = rng.choice(["lineage", "plan", "versions", "channels"])
        # a generated id could name a real version or line (exit 0); a crash or a change it may never cause
        run_cli(cli, shipped, (command, vid), found, ok=True)
    found.check()


# ------------------------------------------------------------------------------------------ 4. REST API

ODD_SEGMENTS = ["%2F", "%00", "%ff", "%", "%zz", "..%2F..", "%E2%80%8B", "%C0%AF", "%ED%A0%80", "base%401%00",
                "base%40%C2%B2", "%20", "." * 3, "base@1%0A", "%25", "base@1;x"]
RAW_BODIES = [b"", b"null", b"[]", b"{", b'"x"', b"1" + b"0" * 5000, b"[" * 30_000 + b"]" * 30_000, b"\xff",
              b'{"a": "\xed\xa0\x80"}', b"NaN", b'{"a": 1e999}', b"{}" * 3, b"\x00"]


def field_bodies(route: str) -> list[bytes]:
    """Bodies that are JSON objects but wrong for ``route``'s fields."""
    huge = "1" + "0" * 5000
    per = {
        "approve": ['{"reason": 1}', '{"reason": ""}', '{"reason": "' + "r" * 3000 + '"}', '{"reason": "\\ud800"}',
                    '{"reason": "r", "overrides": "x"}', '{"reason": "r", "overrides": [1]}',
                    '{"reason": ' + huge + "}", '{"reason": null}', '{"reason": ["r"]}'],
        "promote": ['{"channel": []}', '{"channel": "bogus"}', '{"channel": ""}', '{"channel": "\\ud800"}',
                    '{"channel": "production\\u0000"}', '{"channel": ' + huge + "}", '{"channel": {"a": 1}}'],
        "rollback": ['{"to": {"a": 1}}', '{"to": "nosuch@1"}', '{"to": "\\ud800"}', '{"force": "yes"}',
                     '{"to": "base@' + "9" * 40 + '"}', '{"reason": "' + "r" * 3000 + '"}', '{"to": ' + huge + "}",
                     '{"to": "base@1", "force": true, "reason": ""}'],
        "update": ['{"data": []}', '{"data": "data/good.jsonl"}', '{"data": ["../etc/passwd.jsonl"]}',
                   '{"data": ["' + "x" * 5000 + '.jsonl"]}', '{"data": ["data/\\u0000.jsonl"]}',
                   '{"data": ["data/\\ud800.jsonl"]}', '{"data": ["data/good.jsonl"], "seed": -1}',
                   '{"data": ["data/good.jsonl"], "seed": ' + huge + "}", '{"data": ["data/good.jsonl"], "seed": 1.5}',
                   '{"data": ["/etc/passwd"]}',
                   '{"data": [' + ",".join(['"a.jsonl"'] * 51) + "]}", '{"data": [null]}'],
        "tokens": ['{"role": "god", "name": "x"}', '{"role": "viewer", "name": ""}', '{"role": "viewer"}',
                   '{"role": "viewer", "name": "' + "n" * 300 + '"}', '{"role": "viewer", "name": "\\ud800"}',
                   '{"role": "viewer", "name": "\\u200b"}', '{"role": "viewer", "name": "a\\u0000b"}',
                   '{"role": ' + huge + ', "name": "x"}', '{"role": null, "name": "x"}'],
        "gc": ['{"keep_latest": -1}', '{"keep_latest": 1e999}', '{"keep_latest": "x"}',
               '{"keep_latest": -' + huge + "}", '{"keep_latest": 1.5}'],
    }
    return [b.encode() for b in per[route]]


# routes whose every field has a default: an object of unknown keys is a valid body there, not a malformed one
DEFAULTED = ("/promote", "/rollback", "/api/v1/gc")


def api_cases(vids: list[str]) -> Iterator[tuple[str, str, str, bytes | None]]:
    """(method, path, role, raw body) for every generated API case."""
    for vid in (v for v in vids if v):  # an empty segment is another route (/jobs/ lists the jobs)
        raw = vid.encode("utf-8", "surrogatepass")
        for seg in (quote(raw, safe=""), quote(raw, safe="@")):
            for suffix in ("", "/lineage", "/evaluations", "/decisions", "/plan", "/report"):
                yield "GET", f"/api/v1/versions/{seg}{suffix}", "viewer", None
            yield "POST", f"/api/v1/versions/{seg}/release", "releaser", None
            yield "POST", f"/api/v1/versions/{seg}/approve", "approver", b'{"reason": "looked"}'
            yield "POST", f"/api/v1/versions/{seg}/promote", "releaser", b'{"channel": "staging"}'
            yield "GET", f"/api/v1/lines/{seg}/versions", "viewer", None
            yield "GET", f"/api/v1/lines/{seg}/channels", "viewer", None
            yield "POST", "/api/v1/lines/base/rollback", "releaser", json.dumps({"to": vid}).encode()
            yield "POST", f"/api/v1/lines/{seg}/rollback", "releaser", b"{}"
            yield "POST", f"/api/v1/lines/{seg}/update", "releaser", b'{"data": ["data/good.jsonl"]}'
            yield "GET", f"/api/v1/compare?a={seg}&b=base%401", "viewer", None
            yield "GET", f"/api/v1/jobs/{seg}", "viewer", None
    for seg in ODD_SEGMENTS:
        yield "GET", f"/api/v1/versions/{seg}", "viewer", None
        yield "GET", f"/api/v1/lines/{seg}/channels", "viewer", None
        yield "POST", f"/api/v1/versions/{seg}/promote", "releaser", b'{"channel": "staging"}'
    for token_id in (str(2**70), str(2**63), "-1", "0", "abc", "1e3", "1.5", "%00", "٣"):
        yield "DELETE", f"/api/v1/tokens/{token_id}", "admin", None
    for route in ("ledger", "line-summaries"):
        for query in ("offset=9223372036854775808", "offset=-1", "limit=0", "limit=501", "limit=" + "9" * 40,
                      "offset=1e3", "offset=nan", "offset=", "offset=%00", "limit=-9223372036854775809",
                      "offset=" + "1" * 5000, "offset=%C0%AF"):
            yield "GET", f"/api/v1/{route}?{query}", "viewer", None
    yield "GET", "/api/v1/compare", "viewer", None
    yield "GET", "/api/v1/compare?a=base%401", "viewer", None
    routes = {"approve": ("/api/v1/versions/base%401/approve", "approver"),
              "promote": ("/api/v1/versions/base%401/promote", "releaser"),
              "rollback": ("/api/v1/lines/base/rollback", "releaser"),
              "update": ("/api/v1/lines/support/update", "releaser"),
              "tokens": ("/api/v1/tokens", "admin"),
              "gc": ("/api/v1/gc", "admin")}
    for name, (path, role) in routes.items():
        for body in RAW_BODIES + field_bodies(name):
            if not (body.startswith(b'{"a"') and path.endswith(DEFAULTED)):
                yield "POST", path, role, body


def api_problem(status: int, text: str) -> tuple[str | None, str]:
    """(why the answer is not a clean refusal or None, the shape of its body: loopgate / fastapi)."""
    if status >= 500:
        return f"HTTP {status}: {text[:300]}", "5xx"
    if not 400 <= status < 500:
        return f"HTTP {status} (want 4xx): {text[:200]}", "2xx"
    try:
        body = json.loads(text)
    except ValueError:
        return f"HTTP {status} without a JSON body: {text[:200]!r}", "not json"
    if isinstance(body, dict) and {"error", "message"} <= set(body):
        return None, f"{status} loopgate"
    if isinstance(body, dict) and "detail" in body:
        return None, f"{status} fastapi"
    return f"HTTP {status} with an unexpected body: {text[:200]}", "other"


def test_api_answers_bad_requests_with_4xx_json(shipped: Any, fuzz_report: Any) -> None:
    from fastapi.testclient import TestClient

    from loopgate.server.app import create_app
    from loopgate.store.tokens import create_token

    tokens = {role: create_token(shipped.store, role=role, name=f"fuzz-{role}", actor="test").token
              for role in ("viewer", "releaser", "approver", "admin")}
    client = TestClient(create_app(shipped.root, gateway=False, dashboard=False), raise_server_exceptions=False)
    found = Findings("rest api", fuzz_report)

    def call(method: str, path: str, role: str, body: bytes | None, *, ok: bool = False) -> None:
        case = f"{method} {path[:300]} body={body[:200] if body else body!r}"
        found.tried()
        before = snapshot(shipped.store)
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            with bounded():
                r = client.request(method, path, content=body, headers=headers)
        except Hang as e:
            found.add(case, str(e))
            return
        except Exception as e:  # noqa: BLE001 — the client itself failing on the request is a finding too
            found.add(case, f"raised {type(e).__name__}: {str(e)[:200]}")
            return
        if ok and r.status_code == 200:
            fuzz_report.shapes["200 (a valid input)"] += 1
            problem = None
        else:
            problem, shape = api_problem(r.status_code, r.text)
            fuzz_report.shapes[shape] += 1
        problem = problem or registry_changes(shipped.store, before, moves=True)
        if problem:
            found.add(case, problem)

    for method, path, role, body in api_cases(BAD_IDS):
        call(method, path, role, body)

    rng = random.Random(4)
    for _ in range(GENERATED):
        vid, suffix = random_text(rng), rng.choice(["", "/lineage", "/decisions", "/plan"])
        # a generated id could name base@1 itself (200 is fine); never a 500, a hang or a change
        call("GET", f"/api/v1/versions/{quote(vid.encode('utf-8', 'surrogatepass'), safe='')}{suffix}",
             "viewer", None, ok=True)
    found.check()
