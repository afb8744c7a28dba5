"""``loopgate token``: create prints the secret once and stores only its hash; list never shows it; revoke
stops it authenticating; both changes are ledger entries; bad input is a one-paragraph error (exit 2)."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any


def test_token_create_list_revoke(cli: Any, workspace: Any) -> None:
    from loopgate.store.tokens import authenticate

    made = cli("token", "create", "--role", "approver", "--as", "dana", "--by", "ops", "--json",
               workspace=workspace.root)
    assert made.code == 0, made.err
    secret = made.json()["token"]
    assert secret.startswith("lg_") and len(secret) > 40
    db = sqlite3.connect(workspace.root / ".loopgate" / "registry.db")
    stored = db.execute("select token_sha256, name, role from api_tokens").fetchall()
    assert stored == [(hashlib.sha256(secret.encode()).hexdigest(), "dana", "approver")]
    assert secret not in (workspace.root / ".loopgate" / "registry.db").read_bytes().decode("latin-1")
    listed = cli("token", "list", "--json", workspace=workspace.root)
    assert [t["name"] for t in listed.json()] == ["dana"] and "token" not in listed.json()[0]
    assert authenticate(workspace.store, secret) is not None
    gone = cli("token", "revoke", str(made.json()["id"]), "--as", "ops", workspace=workspace.root)
    assert gone.code == 0 and "revoked token" in gone.out
    assert authenticate(workspace.store, secret) is None
    assert cli("token", "list", "--json", workspace=workspace.root).json() == []
    kinds = [(e.kind, e.actor) for e in workspace.store.ledger() if e.kind.startswith("token.")]
    assert kinds == [("token.create", "ops"), ("token.revoke", "ops")]
    assert workspace.store.verify_ledger().ok


def test_token_errors_are_one_paragraph(cli: Any, workspace: Any) -> None:
    bad = cli("token", "create", "--role", "god", "--as", "x", workspace=workspace.root)
    assert bad.code == 2 and "unknown role 'god'" in bad.err and "Traceback" not in bad.err
    missing = cli("token", "revoke", "42", workspace=workspace.root)
    assert missing.code == 2 and "no token 42" in missing.err
