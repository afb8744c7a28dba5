"""Evaluation: suites, scorers, the batched inference engine, the content-keyed cache and metrics."""

from loopgate.evaluate.cache import EvaluationCache, cache_key, directory_model_key
from loopgate.evaluate.engine import (
    ENGINE_VERSION,
    ChoiceScores,
    EngineConfig,
    Generation,
    auto_batch_size,
    choice_loglikelihoods,
    evaluate_suite,
    generate,
    model_profile,
)
from loopgate.evaluate.lmeval_import import import_lmeval
from loopgate.evaluate.runner import evaluate_model
from loopgate.evaluate.scorers import (
    Contains,
    ExactMatch,
    MarkerRefusalDetector,
    RefusalDetector,
    RegexMatch,
    TextScorer,
    normalize_text,
    refusal_detector,
    safety_correct,
    text_scorer,
)
from loopgate.evaluate.suites import (
    ChoiceRow,
    GenerationRow,
    SafetyRow,
    Suite,
    load_ecosystem_suite,
    load_suite,
    scorer_config,
    suite_sha256,
)

__all__ = [
    "ENGINE_VERSION",
    "ChoiceRow",
    "ChoiceScores",
    "Contains",
    "EngineConfig",
    "EvaluationCache",
    "ExactMatch",
    "Generation",
    "GenerationRow",
    "MarkerRefusalDetector",
    "RefusalDetector",
    "RegexMatch",
    "SafetyRow",
    "Suite",
    "TextScorer",
    "auto_batch_size",
    "cache_key",
    "choice_loglikelihoods",
    "directory_model_key",
    "evaluate_model",
    "evaluate_suite",
    "generate",
    "import_lmeval",
    "load_ecosystem_suite",
    "load_suite",
    "model_profile",
    "normalize_text",
    "refusal_detector",
    "safety_correct",
    "scorer_config",
    "suite_sha256",
    "text_scorer",
]
