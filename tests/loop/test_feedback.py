"""loop/feedback.py: API keys of the apps, and who a key belongs to until it is revoked."""

from __future__ import annotations

from typing import Any

from loopgate.loop.feedback import create_key, key_app, key_identity, keys, revoke_key


def test_a_key_names_its_app_until_it_is_revoked(workspace: Any) -> None:
    secret, info = create_key(workspace, "helpdesk", actor="ops")
    assert key_app(workspace, secret) == "helpdesk"
    assert key_identity(workspace, secret) == (info.id, "helpdesk")
    assert key_app(workspace, secret + "x") is None
    revoke_key(workspace, info.id, actor="ops")
    assert key_app(workspace, secret) is None
    assert [k.id for k in keys(workspace, include_revoked=True)] == [info.id]
    assert keys(workspace) == []
