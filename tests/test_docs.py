"""The docs' worked example is the demo's real ecosystem, not a copy that drifts from it."""

from __future__ import annotations

from pathlib import Path

import yaml

from loopgate.demo.story import ecosystem
from loopgate.spec import Recipe

DOC = Path(__file__).resolve().parents[1] / "docs" / "ecosystem.md"


def test_the_complete_example_in_the_ecosystem_reference_is_the_demos_ecosystem() -> None:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("```yaml\n", text.index("## A complete example")) + len("```yaml\n")
    documented = yaml.safe_load(text[start: text.index("```", start)])
    code = ecosystem(quick=False)
    assert documented["suites"] == code["suites"]
    assert documented["lines"] == code["lines"]
    assert documented["policy"] == code["policy"]
    assert set(documented["recipes"]) == set(code["recipes"])
    for name, recipe in code["recipes"].items():  # compared as recipes: defaults may be left out of the doc
        assert Recipe.model_validate(documented["recipes"][name]) == Recipe.model_validate(recipe), name
