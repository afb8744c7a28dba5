"""The ecosystem spec: ``loopgate.yaml`` → typed, validated objects (pydantic).

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Validation errors are rewritten into ``SpecError`` messages that name the YAML path and the fix.

One module per concern: ``recipes`` (how a line is updated), ``suites`` (what it is evaluated on), ``policy``
(the gates' thresholds), ``lines`` (lines, apps, serving, the executor), ``ecosystem`` (the tree and its queries),
``checks`` (validation across sections) and ``loading`` (the safe YAML parse and its cache). Import from here.
"""

from __future__ import annotations

from loopgate.spec.checks import parse_ecosystem
from loopgate.spec.common import FUNCTION_NAME, MAX_BATCH, MAX_STEPS, MAX_TOKENS, SEED_LIMIT, SPEC_FILE, Tier
from loopgate.spec.ecosystem import Ecosystem, plan_strategies
from loopgate.spec.lines import AppSpec, ExecutorSpec, JobKind, JobResources, LineSpec, ServingSpec
from loopgate.spec.loading import MAX_ALIAS_CHARS, MAX_ALIAS_NODES, load_ecosystem, parse_yaml_text
from loopgate.spec.policy import (
    ApprovalPolicy,
    CanaryPolicy,
    CostPolicy,
    InheritancePolicy,
    PlasticityPolicy,
    Policy,
    PolicySpec,
    PropagationPolicy,
    RegressionPolicy,
    ReleasePolicy,
    RollbackPolicy,
    SafetyPolicy,
)
from loopgate.spec.recipes import (
    DPOSettings,
    EWCSettings,
    GRPOSettings,
    KLSettings,
    LoraSettings,
    Recipe,
    ReplaySettings,
    RewardSpec,
    TinyModelSettings,
)
from loopgate.spec.suites import DEFAULT_CLASSIFIER_QUESTION, DEFAULT_RUBRIC, ClassifierSpec, JudgeSpec, SuiteSpec

__all__ = [
    "DEFAULT_CLASSIFIER_QUESTION", "DEFAULT_RUBRIC", "FUNCTION_NAME", "MAX_ALIAS_CHARS", "MAX_ALIAS_NODES", "MAX_BATCH",
    "MAX_STEPS", "MAX_TOKENS", "SEED_LIMIT", "SPEC_FILE", "AppSpec", "ApprovalPolicy", "CanaryPolicy", "ClassifierSpec",
    "CostPolicy", "DPOSettings", "EWCSettings", "Ecosystem", "ExecutorSpec", "GRPOSettings", "InheritancePolicy",
    "JobKind", "JobResources", "JudgeSpec", "KLSettings", "LineSpec", "LoraSettings", "PlasticityPolicy", "Policy",
    "PolicySpec", "PropagationPolicy", "Recipe", "RegressionPolicy", "ReleasePolicy", "ReplaySettings", "RewardSpec",
    "RollbackPolicy", "SafetyPolicy", "ServingSpec", "SuiteSpec", "Tier", "TinyModelSettings", "load_ecosystem",
    "parse_ecosystem", "parse_yaml_text", "plan_strategies",
]
