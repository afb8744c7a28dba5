"""The ``loopgate`` command (Typer + Rich): :mod:`.app` holds the app, options, JSON output and error
handling; each command group is a module (every other ``loopgate/cli/*.py``) that registers its commands on it.

:func:`main` imports only the module that defines the command being run (see :func:`.app.load_commands`), so a
read-only command never pays for the model libraries a training command imports.
"""

from __future__ import annotations

from loopgate.cli.app import app, load_commands, run


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``loopgate``, ``python -m loopgate``)."""
    run(argv)


__all__ = ["app", "load_commands", "main"]
