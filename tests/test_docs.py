"""The docs' worked example is the demo's real ecosystem, not a copy that drifts from it."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

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


# every `loopgate COMMAND [SUBCOMMAND] … --option` the docs name, in prose, tables and code blocks alike
COMMAND_LINE = re.compile(r"loopgate((?:\s+--(?:device|dtype)(?:[ =]\S+)?)*)\s+([a-z][a-z-]*(?:\s+[a-z][a-z-]*)?)"
                          r"([^`\n|#]*)")
NOT_COMMANDS = {"import"}  # "from loopgate import loop"


def _commands() -> Any:
    import typer

    from loopgate.cli import app, load_commands

    load_commands([])  # every command module (the CLI imports only the one a command line needs)
    return typer.main.get_command(app)


def documented_command_lines() -> list[tuple[str, str, str]]:
    """(where, command words, the rest of the line) for every ``loopgate …`` in README.md and docs/*.md."""
    root = DOC.parents[1]
    found = []
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [(f"{path.name}:{n}", m[2], m[3]) for m in COMMAND_LINE.finditer(line)]
    return found


def test_every_command_and_option_the_docs_name_exists() -> None:
    root = _commands()
    problems = []
    for where, words, rest in documented_command_lines():
        command, path = root, []
        for i, word in enumerate(words.split()):
            if not hasattr(command, "commands") or word not in command.commands:
                rest = " ".join(words.split()[i:]) + rest
                break
            command, path = command.commands[word], [*path, word]
        if not path:
            if words.split()[0] not in NOT_COMMANDS:
                problems.append(f"{where}: no command 'loopgate {words.split()[0]}'")
            continue
        if hasattr(command, "commands"):
            continue  # a group named in prose ("loopgate audit")
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        problems += [f"{where}: 'loopgate {' '.join(path)}' has no option {o}"
                     for o in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest) if o not in options]
    assert not problems, "\n".join(problems)


def test_every_command_of_the_cli_has_its_section_in_the_cli_reference() -> None:
    documented = set()
    for heading in re.findall(r"^###+ (.*)$", (DOC.parent / "cli.md").read_text(encoding="utf-8"), re.M):
        for span in re.findall(r"`([^`]*)`", heading):  # `loopgate key create APP`, `key list [--all]`
            words = span.removeprefix("loopgate ").split()
            documented.add(" ".join(itertools.takewhile(lambda w: re.fullmatch(r"[a-z][a-z-]*", w), words)))

    def walk(command: Any, path: list[str]) -> list[str]:
        if hasattr(command, "commands"):
            return [name for key, sub in command.commands.items() for name in walk(sub, [*path, key])]
        return [" ".join(path)]

    missing = [c for c in walk(_commands(), []) if c not in documented]
    assert not missing, f"docs/cli.md has no section (a ### heading naming it) for: {', '.join(missing)}"
