"""Loopgate: the closed update-and-release loop for continually updated language models."""

__version__ = "0.1.0"
