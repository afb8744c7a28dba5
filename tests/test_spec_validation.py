"""Bad input in ``loopgate.yaml`` never crashes, hangs or slips through (issue #20, the spec part): YAML that
explodes or hides a key, values outside their domain, names that are not names, a missing safety suite."""

from __future__ import annotations

import copy
import math
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from loopgate.errors import LoopgateError, SpecError
from loopgate.hashing import sha256_bytes
from loopgate.names import LINE_NAME_RE, check_line_name
from loopgate.spec import load_ecosystem, parse_ecosystem, parse_yaml_text

VALID = """\
suites:
  reversal: {path: suites/reversal.jsonl}
  harm: {path: suites/harm.jsonl, kind: safety}
recipes:
  sft: {method: sft, steps: 10}
lines:
  base: {tier: foundation, suites: [harm]}
  support: {tier: industrial, parent: base, recipe: sft, suites: [reversal]}
"""

BASE: dict[str, Any] = {
    "suites": {"reversal": {"path": "suites/reversal.jsonl"}, "harm": {"path": "suites/harm.jsonl", "kind": "safety"}},
    "recipes": {"sft": {"method": "sft", "steps": 10}},
    "lines": {"base": {"tier": "foundation", "suites": ["harm"]},
              "support": {"tier": "industrial", "parent": "base", "recipe": "sft", "suites": ["reversal"]}},
}


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic alias bomb: ``width ** levels`` strings from a few hundred bytes of YAML."""
    text = "lol: &l0 [" + ", ".join(['"lol"'] * width) + "]\n"
    for i in range(1, levels):
        text += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]\n"
    return text + f"lines: {{base: {{tier: foundation, description: *l{levels - 1}}}}}\n"


def write_spec(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "loopgate.yaml").write_text(text, encoding="utf-8")
    return root


def spec_error(data: Any) -> str:
    with pytest.raises(SpecError) as exc:
        parse_ecosystem(data)
    return str(exc.value)


# --------------------------------------------------------------------------- YAML


def test_an_alias_bomb_is_refused_at_once_in_bounded_memory(tmp_path: Path) -> None:
    root = write_spec(tmp_path / "ws", billion_laughs())
    cache = tmp_path / "cache"
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(SpecError) as exc:
            load_ecosystem(root, cache_dir=cache)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 20 * 2**20  # was 18 s and 1.45 GB
    msg = str(exc.value)
    assert msg.startswith(f"{root / 'loopgate.yaml'}: aliases (*name) expand the document to 926,177,121 values")
    assert "write the repeated sections out" in msg
    assert not cache.exists()  # refused before anything was expanded or written


def test_an_alias_bomb_is_one_paragraph_and_exit_2_from_every_command(tmp_path: Path, cli: Any) -> None:
    root = write_spec(tmp_path / "ws", billion_laughs())
    for args in (("status",), ("audit", "verify")):
        t0 = time.perf_counter()
        r = cli(*args, workspace=root)
        assert time.perf_counter() - t0 < 2.0
        assert r.code == 2 and "aliases (*name) expand the document" in r.err and "Traceback" not in r.err


def test_aliases_within_the_budget_still_work() -> None:
    data = parse_yaml_text("defaults: &d {method: sft, steps: 10}\nrecipes:\n  a: *d\n  b: {<<: *d, steps: 20}\n")
    assert data["recipes"] == {"a": {"method": "sft", "steps": 10}, "b": {"method": "sft", "steps": 20}}


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(SpecError, match="line 1: an alias refers to the node that contains it"):
        parse_yaml_text("a: &a [1, *a]\n")


def test_a_second_lines_key_is_refused_naming_the_key_and_both_lines(tmp_path: Path) -> None:
    # it used to replace the first: every line declared above it silently vanished
    root = write_spec(tmp_path, VALID + "lines:\n  other: {tier: foundation}\n")
    with pytest.raises(SpecError) as exc:
        load_ecosystem(root)
    assert "line 9: duplicate key 'lines' (first at line 6)" in str(exc.value)


def test_a_duplicate_key_in_a_flow_mapping_is_refused() -> None:
    with pytest.raises(SpecError, match=r"line 2: duplicate key 'steps' \(first at line 2\)"):
        parse_yaml_text("recipes:\n  a: {steps: 1, steps: 2}\n")


def test_a_parse_cached_by_the_older_loader_is_not_trusted(tmp_path: Path) -> None:
    text = VALID + "lines:\n  other: {tier: foundation}\n"
    root = write_spec(tmp_path / "ws", text)
    cache = tmp_path / "cache"
    cache.mkdir()
    # what the previous loader wrote for this text: the document with the first 'lines' dropped
    (cache / f"{sha256_bytes(text.encode())}.json").write_text('{"lines": {"other": {"tier": "foundation"}}}')
    with pytest.raises(SpecError, match="duplicate key 'lines'"):
        load_ecosystem(root, cache_dir=cache)


def test_python_tags_are_not_constructed() -> None:
    with pytest.raises(SpecError, match="not valid YAML"):
        parse_yaml_text("name: !!python/object/apply:os.system ['true']\n")


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("where, value, expected", [
    ("recipes.sft.lr", math.inf, "recipes.sft.lr: Input should be a finite number"),
    ("recipes.sft.lr", math.nan, "recipes.sft.lr: Input should be a finite number"),
    ("recipes.sft.lr", 0, "recipes.sft.lr: Input should be greater than 0"),
    ("recipes.sft.weight_decay", -0.01, "recipes.sft.weight_decay: Input should be greater than or equal to 0"),
    ("recipes.sft.batch_size", 0, "recipes.sft.batch_size: Input should be greater than or equal to 1"),
    ("recipes.sft.batch_size", 65_537, "recipes.sft.batch_size: Input should be less than or equal to 65536"),
    ("recipes.sft.steps", 10**9, "recipes.sft.steps: Input should be less than or equal to 10000000"),
    ("recipes.sft.warmup_steps", -1, "recipes.sft.warmup_steps: Input should be greater than or equal to 0"),
    ("recipes.sft.seed", -1, "recipes.sft.seed: Input should be greater than or equal to 0"),
    ("recipes.sft.seed", 2**32, "recipes.sft.seed: Input should be less than 4294967296"),
    ("recipes.sft.lora", {"r": 0}, "recipes.sft.lora.r: Input should be greater than or equal to 1"),
    ("recipes.sft.lora", {"target_modules": []}, "recipes.sft.lora.target_modules: List should have at least 1"),
    ("recipes.sft.model", {"hidden_size": 30, "num_heads": 4}, "hidden_size 30 must be a multiple of num_heads 4"),
    ("recipes.sft.kl", {"temperature": 0}, "recipes.sft.kl.temperature: Input should be greater than 0"),
    ("suites.reversal.max_new_tokens", 10**7, "suites.reversal.max_new_tokens: Input should be less than"),
    ("policy.defaults.regression", {"confidence": 1.0}, "policy.defaults.regression.confidence: Input should be "
                                                        "less than 1"),
    ("policy.defaults.inheritance", {"confidence": 0}, "policy.defaults.inheritance.confidence: Input should be "
                                                       "greater than 0"),
    ("policy.defaults.safety", {"min_refusal_rate": 1.5}, "policy.defaults.safety.min_refusal_rate: Input should "
                                                          "be less than or equal to 1"),
    ("policy.defaults.safety", {"min_refusal_rate": math.nan}, "min_refusal_rate: Input should be a finite number"),
    ("policy.defaults.safety", {"alpha": 0}, "policy.defaults.safety.alpha: Input should be greater than 0"),
    ("policy.defaults.regression", {"max_negative_flip_rate": -0.1}, "max_negative_flip_rate: Input should be "
                                                                     "greater than or equal to 0"),
    ("policy.defaults.cost", {"max_latency_p95_ratio": math.inf}, "max_latency_p95_ratio: Input should be a finite"),
    ("policy.defaults.rollback", {"smoke_suite": "reversl"}, "policy.defaults.rollback.smoke_suite: unknown suite "
                                                             "'reversl' (did you mean 'reversal'?)"),
])
def test_values_outside_their_domain_are_refused_with_their_path(where: str, value: Any, expected: str) -> None:
    data = copy.deepcopy(BASE)
    *path, last = where.split(".")
    node = data
    for key in path:
        node = node.setdefault(key, {})
    node[last] = value
    assert expected in spec_error(data)


def test_yaml_infinities_are_refused(tmp_path: Path) -> None:
    root = write_spec(tmp_path, VALID.replace("steps: 10}", "steps: 10, lr: .inf}"))
    with pytest.raises(SpecError, match="recipes.sft.lr: Input should be a finite number"):
        load_ecosystem(root)


def test_an_unknown_smoke_suite_is_refused_in_a_line_section() -> None:
    data = copy.deepcopy(BASE)
    data["policy"] = {"lines": {"support": {"rollback": {"smoke_suite": "nope"}}}}
    assert "policy.lines.support.rollback.smoke_suite: unknown suite 'nope'" in spec_error(data)


def test_the_edges_of_each_domain_are_accepted() -> None:
    data = copy.deepcopy(BASE)
    data["recipes"]["sft"].update(seed=2**32 - 1, batch_size=65_536, weight_decay=0.0, lora={"r": 1})
    data["policy"] = {"defaults": {"safety": {"min_refusal_rate": 1.0}, "regression": {"tolerance": 0.0},
                                   "rollback": {"smoke_suite": "reversal", "min_smoke_score": 0.0}}}
    eco = parse_ecosystem(data)
    assert eco.recipes["sft"].seed == 2**32 - 1 and eco.policy_for("support").rollback.smoke_suite == "reversal"


# --------------------------------------------------------------------------- suite files


def test_missing_suite_files_are_named_with_their_resolved_path(tmp_path: Path) -> None:
    root = write_spec(tmp_path, VALID)
    (root / "suites").mkdir()
    (root / "suites" / "harm.jsonl").write_text('{"prompt": "p", "expect": "refuse"}\n', encoding="utf-8")
    eco = load_ecosystem(root)  # a workspace is declared before its files are written: loading stays lenient
    with pytest.raises(SpecError) as exc:
        eco.check_suite_files()
    assert f"suites.reversal.path: {root / 'suites' / 'reversal.jsonl'} does not exist" in str(exc.value)
    assert "harm" not in str(exc.value)
    eco.check_suite_files(["harm"])
    with pytest.raises(SpecError, match="suites.reversal.path"):
        load_ecosystem(root, check_files=True)
    (root / "suites" / "reversal.jsonl").write_text('{"prompt": "a", "target": "a"}\n', encoding="utf-8")
    assert load_ecosystem(root, check_files=True).suite_path("reversal").is_file()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["../../../x", "", "a\x00b", "x" * 65, "-lead", "_lead", "with space", "a/b",
                                  "a.b", "línea", "a@1", "trailing\n"])
def test_bad_line_names_are_refused(name: str) -> None:
    with pytest.raises(LoopgateError) as exc:
        check_line_name(name)
    assert "is not valid: use 1 to 64 letters, digits, '-' or '_', starting with a letter or a digit" in str(exc.value)
    data = copy.deepcopy(BASE)
    data["lines"][name] = {"tier": "foundation"}
    assert "lines: line name" in spec_error(data)


@pytest.mark.parametrize("name", ["a", "A-b_9", "9x", "x" * 64, "base"])
def test_good_line_names_pass(name: str) -> None:
    assert check_line_name(name) == name and LINE_NAME_RE.fullmatch(name)


def test_a_long_bad_name_is_shortened_in_the_message() -> None:
    with pytest.raises(LoopgateError) as exc:
        check_line_name("x" * 10_000)
    assert "(10000 chars)" in str(exc.value) and len(str(exc.value)) < 300


def test_bad_suite_names_are_refused() -> None:
    data = copy.deepcopy(BASE)
    data["suites"]["../etc/passwd"] = {"path": "x.jsonl"}
    assert "suites: suite name '../etc/passwd' is not valid" in spec_error(data)


# --------------------------------------------------------------------------- safety suites


def test_an_application_line_must_reach_a_safety_suite_once_the_ecosystem_declares_one() -> None:
    data = copy.deepcopy(BASE)
    data["lines"]["orphan"] = {"tier": "application", "parent": "support"}  # inherits harm: fine
    data["lines"]["side"] = {"tier": "foundation"}
    data["lines"]["bare"] = {"tier": "application", "parent": "side"}  # reaches no safety suite
    eco = parse_ecosystem(data)
    assert eco.policy_for("orphan").safety.require_suite is True
    assert eco.policy_for("bare").safety.require_suite is True
    assert eco.policy_for("side").safety.require_suite is False  # a foundation is not required by default
    # no safety suite declared at all: nothing to require by default
    plain = parse_ecosystem({"lines": {"b": {"tier": "foundation"}, "a": {"tier": "application", "parent": "b"}}})
    assert plain.policy_for("a").safety.require_suite is False
    assert "declares no safety suite" in (plain.policy_for("a").safety.reason or "")


def test_a_tier_may_require_and_a_line_may_opt_out_with_a_reason() -> None:
    data = copy.deepcopy(BASE)
    data["policy"] = {"tiers": {"industrial": {"safety": {"require_suite": True}}},
                      "lines": {"support": {"safety": {"require_suite": False, "reason": "internal tooling only"}}}}
    eco = parse_ecosystem(data)
    assert eco.policy_for("support").safety.reason == "internal tooling only"
    data["policy"]["lines"]["support"]["safety"] = {"require_suite": False}
    assert "policy.lines.support.safety: Value error, require_suite: false needs a 'reason'" in spec_error(data)
