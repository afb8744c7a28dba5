"""Every module of the service layer (``loopgate/loop/*.py``) has a same-named test file,
``tests/loop/test_<module>.py``: a reader looking for what a module does finds its tests by name."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_loop_module_has_a_same_named_test_file() -> None:
    modules = sorted(p.stem for p in (ROOT / "loopgate/loop").glob("*.py") if p.stem != "__init__")
    missing = [m for m in modules if not (ROOT / "tests/loop" / f"test_{m}.py").is_file()]
    assert modules and missing == [], f"loop/ modules without tests/loop/test_<module>.py: {missing}"

