"""``loopgate serve``: one FastAPI app (:func:`create_app`) with a router per concern — the gateway
(``/v1``, OpenAI-compatible), the control-plane REST API (``/api/v1``) and the dashboard (``/``)."""

from loopgate.server.app import create_app

__all__ = ["create_app"]
