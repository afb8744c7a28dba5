"""``python -m loopgate`` — the same as the ``loopgate`` command."""

from loopgate.cli import main

main()
