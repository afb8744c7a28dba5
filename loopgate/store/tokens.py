"""Bearer tokens of the control plane (REST API, dashboard), each with one role and one identity.

Only a token's sha256 is stored: a token is 32 random bytes, so a plain hash cannot be reversed, and a
leaked registry leaks no usable token. Creating and revoking a token is recorded in the ledger in the same
transaction as the change.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select

from loopgate.errors import LoopgateError, NotFoundError
from loopgate.identity import normalise_identity
from loopgate.records import utcnow
from loopgate.store import ledger as ledger_mod
from loopgate.store.registry import Store
from loopgate.store.tables import TokenRow

# lowest to highest; releaser and approver are separate powers, both above viewer and below admin
ROLES = ("viewer", "releaser", "approver", "admin")
PREFIX = "lg_"


class TokenInfo(BaseModel):
    """A token as listed: never the token itself."""

    id: int
    name: str
    role: str
    prefix: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None


class NewToken(TokenInfo):
    """A token just created: the only time the secret is shown."""

    token: str


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(id=row.id, name=row.name, role=row.role, prefix=row.prefix, created_by=row.created_by,
                     created_at=row.created_at, revoked_at=row.revoked_at)


def create_token(store: Store, *, role: str, name: str, actor: str) -> NewToken:
    """A new random token acting as ``name`` with ``role``; the secret is returned once and never stored."""
    if role not in ROLES:
        raise LoopgateError(f"unknown role '{role}'; roles are {', '.join(ROLES)}")
    name = normalise_identity(name, what="a token's name (who it acts as, e.g. --as alice)")
    secret = PREFIX + secrets.token_urlsafe(32)
    with store.db.tx() as s:
        row = TokenRow(name=name, role=role, token_sha256=token_sha256(secret), prefix=secret[:10],
                       created_by=actor, created_at=utcnow())
        s.add(row)
        s.flush()
        ledger_mod.append(s, actor=actor, kind="token.create", subject=f"token/{row.id}",
                          payload={"name": name, "role": role, "prefix": row.prefix,
                                   "token_sha256": row.token_sha256})
        info = _info(row)
    return NewToken(**info.model_dump(), token=secret)


def list_tokens(store: Store, *, include_revoked: bool = False) -> list[TokenInfo]:
    with store.db.read() as s:
        q = select(TokenRow).order_by(TokenRow.id)
        if not include_revoked:
            q = q.where(TokenRow.revoked_at.is_(None))
        return [_info(r) for r in s.execute(q).scalars()]


def revoke_token(store: Store, token_id: int, *, actor: str) -> TokenInfo:
    """Revoke a token by its id (from ``token list``); a revoked token authenticates nothing."""
    with store.db.tx() as s:
        row = s.get(TokenRow, token_id)
        if row is None:
            raise NotFoundError(f"no token {token_id}; see 'loopgate token list'")
        if row.revoked_at is not None:
            raise LoopgateError(f"token {token_id} ({row.name}) is already revoked")
        row.revoked_at = utcnow()
        ledger_mod.append(s, actor=actor, kind="token.revoke", subject=f"token/{row.id}",
                          payload={"name": row.name, "role": row.role, "prefix": row.prefix})
        info = _info(row)
    return info


def authenticate(store: Store, token: str) -> TokenInfo | None:
    """The live token with this secret, or None (unknown or revoked)."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    with store.db.read() as s:
        row = s.execute(select(TokenRow).where(TokenRow.token_sha256 == token_sha256(token))).scalar_one_or_none()
        return _info(row) if row is not None and row.revoked_at is None else None
