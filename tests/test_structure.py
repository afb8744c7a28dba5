"""Sizes a newcomer can read (#23): no module in ``loopgate/`` over 400 lines, none in ``loop/``, ``cli/`` or
``server/`` over 300, and no function over 80 lines. Counted on the source, so a file that grows past the line
fails here with its name, and the fix is a split by concern (``docs/architecture.md``)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "loopgate"
FILE_LIMIT = 400
FRONT_AND_LOOP_LIMIT = 300
FRONT_AND_LOOP = ("loop", "cli", "server")
FUNCTION_LIMIT = 80


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _limit(path: Path) -> int:
    top = path.relative_to(PACKAGE).parts[0]
    return FRONT_AND_LOOP_LIMIT if top in FRONT_AND_LOOP else FILE_LIMIT


def test_no_module_is_over_its_size_limit() -> None:
    over = []
    for path in _modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > _limit(path):
            over.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines > {_limit(path)}")
    assert not over, "split these by concern:\n" + "\n".join(over)


def test_no_function_is_over_80_lines() -> None:
    long = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LIMIT:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length} lines")
    assert not long, "split these into steps:\n" + "\n".join(long)


def test_the_limits_catch_what_they_count(tmp_path: Path) -> None:
    """The counter itself: a long function and a long file are seen."""
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LIMIT))
    tree = ast.parse(f"def f():\n{body}\n")
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    assert (fn.end_lineno or 0) - fn.lineno + 1 == FUNCTION_LIMIT + 1
    assert _limit(PACKAGE / "loop" / "x.py") == FRONT_AND_LOOP_LIMIT and _limit(PACKAGE / "spec" / "x.py") == FILE_LIMIT
