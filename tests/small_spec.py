"""The small ecosystem most tests start from: base → support → billing, and the app helpdesk (imported by
``conftest.py`` and by tests that build their own workspace; a test module cannot import ``conftest`` by name,
since every folder of tests has one)."""

SMALL_SPEC = """\
name: test-eco
suites:
  reversal:
    path: suites/reversal.jsonl
recipes:
  domain-sft:
    method: sft
    steps: 5
lines:
  base:
    tier: foundation
  support:
    tier: industrial
    parent: base
    recipe: domain-sft
    suites: [reversal]
  billing:
    tier: application
    parent: support
  helpdesk:
    tier: app
    parent: support
    app:
      prompt_template: "Q: {input}\\nA:"
"""
