"""The embedded demo ecosystem (synthetic domains, tiny models) behind ``loopgate demo``."""

from loopgate.demo.story import run_demo

__all__ = ["run_demo"]
