"""The CLI's command table (``loopgate.cli.app.COMMANDS``) names the module of every command the app has, and
nothing else: a command missing from it could not be run, a stale line would import a module for nothing."""

from __future__ import annotations

import importlib


def _registered() -> dict[str, str]:
    from loopgate.cli import app, load_commands

    load_commands([])  # every command module
    found = {}
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
        found[name] = info.callback.__module__.rsplit(".", 1)[-1]  # type: ignore[union-attr]
    for group in app.registered_groups:
        callbacks = [c.callback for c in group.typer_instance.registered_commands]  # type: ignore[union-attr]
        found[str(group.name)] = callbacks[0].__module__.rsplit(".", 1)[-1]  # type: ignore[union-attr]
    return found


def test_the_table_names_the_module_of_every_command() -> None:
    from loopgate.cli.app import COMMANDS

    assert _registered() == COMMANDS


def test_each_listed_module_imports() -> None:
    from loopgate.cli.app import COMMANDS

    for module in set(COMMANDS.values()):
        assert importlib.import_module(f"loopgate.cli.{module}")
