"""The ``loopgate`` command (Typer + Rich): :mod:`.app` holds the app, options, JSON output and error
handling; each command group is a module that registers its commands on it."""

from __future__ import annotations

from loopgate.cli import audit, core, evaluation, release, report, serve, tokens  # noqa: F401  # each registers its commands
from loopgate.cli.app import app, run


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``loopgate``, ``python -m loopgate``)."""
    run(argv)


__all__ = ["app", "main"]
