"""The embedded demo ecosystem (synthetic domains, tiny models) behind ``loopgate demo``."""

from typing import Any


def run_demo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run the demo story (imported lazily: the world generator does not need the whole loop)."""
    from loopgate.demo.story import run_demo as _run

    return _run(*args, **kwargs)


__all__ = ["run_demo"]
