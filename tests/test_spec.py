"""The ecosystem spec: every validation rule names the YAML path and the fix; policies merge in order."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopgate.errors import SpecError
from loopgate.spec import Ecosystem, Tier, load_ecosystem, parse_ecosystem

BASE: dict[str, Any] = {
    "suites": {"reversal": {"path": "suites/reversal.jsonl"}, "safety": {"path": "s.jsonl", "kind": "safety"}},
    "recipes": {"sft": {"method": "sft", "steps": 10}},
    "lines": {
        "base": {"tier": "foundation", "suites": ["safety"]},
        "support": {"tier": "industrial", "parent": "base", "recipe": "sft", "suites": ["reversal"]},
        "billing": {"tier": "application", "parent": "support"},
        "helpdesk": {"tier": "app", "parent": "billing", "app": {"prompt_template": "Q: {input}"}},
    },
}


def spec(**edits: Any) -> dict[str, Any]:
    """A deep copy of BASE with dotted-path edits applied (``lines__billing__parent="x"``)."""
    d = copy.deepcopy(BASE)
    for dotted, value in edits.items():
        *path, last = dotted.split("__")
        node = d
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return d


def error_of(data: Any) -> str:
    with pytest.raises(SpecError) as exc:
        parse_ecosystem(data)
    return str(exc.value)


def test_valid_spec_parses_with_tree_queries() -> None:
    eco = parse_ecosystem(BASE)
    assert eco.ancestors("billing") == ["support", "base"]
    assert eco.descendants("base") == ["support", "billing", "helpdesk"]
    assert eco.inherited_suites("billing") == ["reversal", "safety"]
    assert eco.owned_suites("support") == ["reversal"]
    assert eco.recipe_for("support").steps == 10
    assert eco.lines["helpdesk"].tier is Tier.app


def test_unknown_parent_names_path_and_suggests() -> None:
    msg = error_of(spec(lines__billing__parent="suport"))
    assert "lines.billing.parent: unknown line 'suport' (did you mean 'support'?)" in msg


def test_cycle_is_rejected_once() -> None:
    d = spec()
    d["lines"]["a"] = {"tier": "industrial", "parent": "b"}
    d["lines"]["b"] = {"tier": "industrial", "parent": "a"}
    msg = error_of(d)
    assert "cycle a → b → a" in msg
    assert msg.count("cycle") == 1
    assert "cycle billing" not in msg


def test_self_parent_is_a_cycle() -> None:
    msg = error_of(spec(lines__support__parent="support"))
    assert "lines.support.parent: cycle support → support" in msg


def test_tier_inversion_is_rejected() -> None:
    # an industrial line whose parent is an application line
    d = spec()
    d["lines"]["legal"] = {"tier": "industrial", "parent": "billing"}
    msg = error_of(d)
    assert "lines.legal.parent: tier inversion" in msg
    assert "an industrial line cannot have the application line 'billing' as parent" in msg


def test_same_tier_parent_is_an_inversion() -> None:
    d = spec()
    d["lines"]["legal"] = {"tier": "industrial", "parent": "support"}
    assert "lines.legal.parent: tier inversion" in error_of(d)


def test_foundation_with_parent_and_orphan_rejected() -> None:
    d = spec()
    d["lines"]["base2"] = {"tier": "foundation", "parent": "base"}
    d["lines"]["orphan"] = {"tier": "industrial"}
    msg = error_of(d)
    assert "lines.base2.parent: a foundation line has no parent" in msg
    assert "lines.orphan.parent: an industrial line needs a parent line" in msg


@pytest.mark.parametrize(
    ("data_edit", "path"),
    [
        ({"nmae": "x"}, "nmae"),
        ({"lines__support__tyer": "x"}, "lines.support.tyer"),
        ({"recipes__sft__stpes": 3}, "recipes.sft.stpes"),
        ({"recipes__sft__lora": {"rank": 4}}, "recipes.sft.lora.rank"),
        ({"lines__support__recipe": {"method": "sft", "stepz": 3}}, "lines.support.recipe.stepz"),
        ({"suites__reversal__scorr": "exact"}, "suites.reversal.scorr"),
        ({"lines__helpdesk__app": {"promt": "x"}}, "lines.helpdesk.app.promt"),
        ({"policy": {"defualts": {}}}, "policy.defualts"),
        ({"policy": {"defaults": {"regresion": {}}}}, "policy.defaults.regresion"),
        ({"policy": {"tiers": {"industrial": {"safety": {"floor": 1}}}}}, "policy.tiers.industrial.safety.floor"),
        ({"policy": {"lines": {"support": {"cost": {"max_latency": 1}}}}}, "policy.lines.support.cost.max_latency"),
    ],
)
def test_unknown_keys_are_errors_anywhere(data_edit: dict[str, Any], path: str) -> None:
    msg = error_of(spec(**data_edit))
    assert f"{path}: unknown key (remove it or check its spelling)" in msg
    assert "valid string" not in msg  # the union member pydantic also tried is not reported


def test_every_bad_policy_key_gets_its_full_path() -> None:
    msg = error_of(spec(policy={"defaults": {"regresion": {}, "safety": {"flor": 1}}}))
    assert "policy.defaults.regresion: unknown key" in msg
    assert "policy.defaults.safety.flor: unknown key" in msg


def test_unknown_policy_line_and_tier() -> None:
    assert "policy.lines.suport: unknown line (did you mean 'support'?)" in error_of(
        spec(policy={"lines": {"suport": {}}}))
    assert "policy.tiers.industrail:" in error_of(spec(policy={"tiers": {"industrail": {}}}))


def test_unknown_suite_and_recipe_references() -> None:
    assert "lines.support.suites[0]: unknown suite 'reversl' (did you mean 'reversal'?)" in error_of(
        spec(lines__support__suites=["reversl"]))
    assert "lines.support.recipe: unknown recipe 'sfft' (did you mean 'sft'?)" in error_of(
        spec(lines__support__recipe="sfft"))
    eco = parse_ecosystem(BASE)
    with pytest.raises(SpecError, match="unknown recipe 'lora-big'"):
        eco.recipe_for("support", override="lora-big")
    with pytest.raises(SpecError, match=r"lines.billing.recipe: the line has no recipe"):
        eco.recipe_for("billing")
    with pytest.raises(SpecError, match="unknown line 'biling' \\(did you mean 'billing'\\?\\)"):
        eco.line("biling")


def test_app_rules() -> None:
    assert "lines.helpdesk.app: an app line needs an 'app:' section" in error_of(spec(lines__helpdesk__app=None))
    assert "lines.billing.app: only lines of tier 'app' take an 'app:' section" in error_of(
        spec(lines__billing__app={"prompt_template": "{input}"}))
    d = spec()
    d["lines"]["widget"] = {"tier": "app", "parent": "helpdesk", "app": {}}
    msg = error_of(d)
    assert "lines.widget.parent: 'helpdesk' is an app; apps have no children" in msg
    assert "'staging'" in error_of(spec(lines__helpdesk__app={"channel": "nightly"}))


def test_bad_values_name_their_path() -> None:
    assert "lines.support.tier: Input should be" in error_of(spec(lines__support__tier="supreme"))
    assert "recipes.sft.steps:" in error_of(spec(recipes__sft__steps=0))
    assert "lines: required key is missing" in error_of({"name": "x"})
    assert "expected a mapping" in error_of([1, 2])


def test_policy_merges_defaults_then_tier_then_line() -> None:
    eco = parse_ecosystem(spec(policy={
        "defaults": {"regression": {"tolerance": 0.01, "min_examples": 5}, "approval": {"approvers": 0}},
        "tiers": {"industrial": {"regression": {"tolerance": 0.02}, "approval": {"approvers": 1}}},
        "lines": {"support": {"regression": {"tolerance": 0.03}}},
    }))
    support, billing, base = eco.policy_for("support"), eco.policy_for("billing"), eco.policy_for("base")
    assert support.regression.tolerance == 0.03  # line beats tier
    assert support.regression.min_examples == 5  # deep merge keeps the default's sibling key
    assert support.approval.approvers == 1  # tier beats default
    assert billing.regression.tolerance == 0.01 and billing.approval.approvers == 0
    assert base.regression.confidence == 0.95  # built-in default when nothing overrides it


def test_policy_hash_follows_thresholds() -> None:
    a = parse_ecosystem(spec(policy={"defaults": {"safety": {"min_refusal_rate": 0.9}}})).policy_for("support")
    b = parse_ecosystem(spec(policy={"defaults": {"safety": {"min_refusal_rate": 0.95}}})).policy_for("support")
    same = parse_ecosystem(spec()).policy_for("support")
    assert a.sha256() == same.sha256()  # 0.9 is the default: spelling it out changes nothing
    assert a.sha256() != b.sha256()
    assert len(a.sha256()) == 64


def test_load_ecosystem_from_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "loopgate.yaml").write_text(yaml.safe_dump(BASE))
    for where in (tmp_path, tmp_path / "loopgate.yaml"):
        eco = load_ecosystem(where)
        assert isinstance(eco, Ecosystem) and eco.root == tmp_path
    assert load_ecosystem(tmp_path).suite_path("reversal") == tmp_path / "suites/reversal.jsonl"


def test_load_ecosystem_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no loopgate.yaml at .*run 'loopgate init"):
        load_ecosystem(tmp_path)


def test_load_ecosystem_invalid_yaml(tmp_path: Path) -> None:
    (tmp_path / "loopgate.yaml").write_text("lines:\n  base: {tier: foundation\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_ecosystem(tmp_path)


def test_load_ecosystem_reports_file_name(tmp_path: Path) -> None:
    (tmp_path / "loopgate.yaml").write_text(yaml.safe_dump(spec(lines__billing__parent="suport")))
    with pytest.raises(SpecError, match=r"^loopgate.yaml: lines.billing.parent: unknown line 'suport'"):
        load_ecosystem(tmp_path)
