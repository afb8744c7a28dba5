"""The production end's registry functions: API keys, the request log, feedback and canary checks (#13).

Like every :class:`~loopgate.store.Store` write, each function here commits its rows together with their
ledger entry in one transaction. The request log is written in batches (one transaction and one ledger entry
per flush, covering the ids it wrote), so serving a request never waits for a commit.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select

from loopgate.errors import LoopgateError, NotFoundError
from loopgate.hashing import sha256_json
from loopgate.records import utcnow
from loopgate.store import ledger as ledger_mod
from loopgate.store.moves import ChannelMove, move_in
from loopgate.store.registry import Store
from loopgate.store.tables import CanaryCheckRow, ChannelRow, FeedbackRow, GatewayKeyRow, GatewayRequestRow, LineRow

KEY_PREFIX = "lg-"
log = logging.getLogger(__name__)

# what a text column cannot hold: PostgreSQL refuses NUL in text, and a lone surrogate is not encodable UTF-8 on
# either database. One such character in one prompt used to fail the request log's whole batch (#20 item 7).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class KeyInfo(BaseModel):
    id: int
    app: str
    prefix: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None


class RequestRecord(BaseModel):
    """One request as the log keeps it."""

    id: str
    app: str | None
    line: str
    version_id: str
    channel: str
    shadow: bool = False
    user_hash: str | None = None
    key_id: int | None = None  # the API key that asked (None with keys off)
    ok: bool = True
    error: str | None = None
    latency_ms: float
    prompt_tokens: int
    output_tokens: int
    prompt: str | None = None
    output: str | None = None
    seed: int | None = None  # the sampling seed of a sampled answer (None: greedy), as returned to the client
    created_at: datetime


class FeedbackRecord(BaseModel):
    id: int
    request_id: str
    version_id: str
    score: float
    label: str | None
    comment: str | None
    created_at: datetime
    key_id: int | None = None
    counted: bool = True  # whether the canary analysis counts it (its key's per-version share, see add_feedback)


class CanaryCheck(BaseModel):
    id: int
    line: str
    canary_version: str
    production_version: str
    verdict: str
    outcome: str
    consecutive_failures: int
    evidence: dict[str, Any]
    created_at: datetime


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def storable(text: str | None) -> str | None:
    """``text`` as every database can store it: NUL and lone surrogates become U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text) if text else text


# ------------------------------------------------------------------------------------------- API keys


def create_key(store: Store, app: str, *, actor: str) -> tuple[str, KeyInfo]:
    """A new API key for ``app``: returns the key (shown once, never stored) and what is stored of it."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with store.db.tx() as s:
        if s.get(LineRow, app) is None:
            raise NotFoundError(f"no line named '{app}'; keys are made for an app (or a model line) of the spec")
        row = GatewayKeyRow(app=app, key_sha256=key_sha256(key), prefix=key[:10], created_by=actor,
                            created_at=utcnow())
        s.add(row)
        s.flush()
        ledger_mod.append(s, actor=actor, kind="gateway.key", subject=app,
                          payload={"key_id": row.id, "prefix": row.prefix})
        info = KeyInfo(id=row.id, app=app, prefix=row.prefix, created_by=actor, created_at=row.created_at)
    return key, info


def key_app(store: Store, key: str) -> str | None:
    """The app (or line) an API key belongs to, or None for an unknown or revoked key."""
    found = key_identity(store, key)
    return found[1] if found is not None else None


def key_identity(store: Store, key: str) -> tuple[int, str] | None:
    """(id, app) of a live API key; None for an unknown or revoked key."""
    with store.db.read() as s:
        row = s.execute(select(GatewayKeyRow).where(GatewayKeyRow.key_sha256 == key_sha256(key))).scalar_one_or_none()
        return (row.id, row.app) if row is not None and row.revoked_at is None else None


def _key_info(r: GatewayKeyRow) -> KeyInfo:
    return KeyInfo(id=r.id, app=r.app, prefix=r.prefix, created_by=r.created_by, created_at=r.created_at,
                   revoked_at=r.revoked_at)


def keys(store: Store, *, include_revoked: bool = False) -> list[KeyInfo]:
    with store.db.read() as s:
        return [_key_info(r) for r in s.execute(select(GatewayKeyRow).order_by(GatewayKeyRow.id)).scalars()
                if include_revoked or r.revoked_at is None]


def revoke_key(store: Store, key_id: int, *, actor: str) -> KeyInfo:
    """Revoke an API key by its id (from ``key list``); the ledger records who did it."""
    with store.db.tx() as s:
        row = s.get(GatewayKeyRow, key_id)
        if row is None:
            raise NotFoundError(f"no API key {key_id}; see 'loopgate key list'")
        if row.revoked_at is not None:
            raise LoopgateError(f"API key {key_id} ({row.prefix}… of '{row.app}') is already revoked")
        row.revoked_at = utcnow()
        ledger_mod.append(s, actor=actor, kind="gateway.key.revoke", subject=row.app,
                          payload={"key_id": row.id, "prefix": row.prefix})
        info = _key_info(row)
    return info


# ------------------------------------------------------------------------------------------- request log


def _row(r: RequestRecord) -> GatewayRequestRow:
    return GatewayRequestRow(**{**r.model_dump(), "prompt": storable(r.prompt), "output": storable(r.output),
                                "error": storable(r.error), "app": storable(r.app)})


def _ledger_requests(s: Any, actor: str, records: Sequence[RequestRecord]) -> None:
    ledger_mod.append(s, actor=actor, kind="gateway.requests", subject=records[0].line, payload={
        "count": len(records), "first": records[0].id, "last": records[-1].id,
        "ids_sha256": sha256_json([r.id for r in records]),
        "versions": sorted({r.version_id for r in records})})


def log_requests(store: Store, records: Sequence[RequestRecord], *, actor: str = "gateway") -> int:
    """Append requests to the log in one transaction with one ledger entry naming them (by a hash of their ids);
    the number written.

    Texts are made storable first (:func:`storable`). Should the batch still fail, it is written again row by row
    (a savepoint each), so one row the database refuses never loses the others: that row is kept without its
    texts, or, refused even so, left out and logged. Only a batch that cannot be written at all raises."""
    if not records:
        return 0
    try:
        with store.db.tx() as s:
            s.add_all([_row(r) for r in records])
            s.flush()
            _ledger_requests(s, actor, records)
        return len(records)
    except Exception as e:  # noqa: BLE001 - any refusal of one row (a driver ValueError, a DataError) lands here
        first = e
    written: list[RequestRecord] = []
    with store.db.tx() as s:
        for r in records:
            for rec in (r, r.model_copy(update={"prompt": None, "output": None,
                                                "error": None if r.ok else "(error text not storable)"})):
                try:
                    with s.begin_nested():
                        s.add(_row(rec))
                        s.flush()
                except Exception as e:  # noqa: BLE001 - rolled back to the savepoint; try the next form
                    log.warning("request %s could not be logged%s: %s", r.id,
                                "" if rec is r else " even without its texts", e)
                    continue
                written.append(rec)
                break
        if written:
            _ledger_requests(s, actor, written)
    log.warning("the request log batch failed (%s); %d of %d rows written one by one", first, len(written),
                len(records))
    return len(written)


def _request(row: GatewayRequestRow) -> RequestRecord:
    return RequestRecord(id=row.id, app=row.app, line=row.line, version_id=row.version_id, channel=row.channel,
                         shadow=row.shadow, user_hash=row.user_hash, key_id=row.key_id, ok=row.ok, error=row.error,
                         latency_ms=row.latency_ms, prompt_tokens=row.prompt_tokens,
                         output_tokens=row.output_tokens, prompt=row.prompt, output=row.output,
                         seed=row.seed, created_at=row.created_at)


def request(store: Store, request_id: str) -> RequestRecord | None:
    with store.db.read() as s:
        row = s.get(GatewayRequestRow, request_id)
        return _request(row) if row is not None else None


def requests(store: Store, version_id: str, *, since: datetime | None = None) -> list[RequestRecord]:
    """Every logged request a version answered (shadow answers included), oldest first."""
    with store.db.read() as s:
        q = select(GatewayRequestRow).where(GatewayRequestRow.version_id == version_id)
        if since is not None:
            q = q.where(GatewayRequestRow.created_at >= since)
        return [_request(r) for r in s.execute(q.order_by(GatewayRequestRow.created_at)).scalars()]


def request_count(store: Store, line: str) -> int:
    with store.db.read() as s:
        return int(s.execute(select(func.count()).select_from(GatewayRequestRow)
                             .where(GatewayRequestRow.line == line)).scalar_one())


# ------------------------------------------------------------------------------------------- feedback


def _feedback(r: FeedbackRow) -> FeedbackRecord:
    return FeedbackRecord(id=r.id, request_id=r.request_id, version_id=r.version_id, score=r.score, label=r.label,
                          comment=r.comment, created_at=r.created_at, key_id=r.key_id, counted=r.counted)


def add_feedback(store: Store, request_id: str, score: float, *, label: str | None = None,
                 comment: str | None = None, actor: str = "gateway", key_id: int | None = None,
                 per_key: int | None = None, since: datetime | None = None) -> FeedbackRecord:
    """Join a user's score to the version that answered ``request_id`` (never a shadow answer).

    One rating per answer: a second one is appended and replaces the first for every reader (the latest wins).
    ``per_key`` caps what one API key's ratings weigh in the canary analysis: a key's rating of an answer it has
    not rated before counts only while the key has fewer than ``per_key`` counted answers on that version since
    ``since`` (the live canary's start); a re-rating keeps the answer's first decision. Ratings past the cap are
    kept (export, the ledger) with ``counted`` false. No cap without a key (keys off) or without ``per_key``.
    The count runs under the registry's write lock, so concurrent ratings cannot overshoot it."""
    with store.db.tx() as s:
        req = s.get(GatewayRequestRow, request_id)
        if req is None or req.shadow:
            raise NotFoundError(f"no request '{request_id}' in the request log; send the id the gateway returned")
        before = s.execute(select(FeedbackRow).where(FeedbackRow.request_id == request_id)
                           .order_by(FeedbackRow.id.desc()).limit(1)).scalar_one_or_none()
        counted = True
        if before is not None:
            counted = before.counted
        elif key_id is not None and per_key is not None:
            q = (select(func.count(func.distinct(FeedbackRow.request_id)))
                 .where(FeedbackRow.key_id == key_id, FeedbackRow.version_id == req.version_id, FeedbackRow.counted))
            if since is not None:
                q = q.where(FeedbackRow.created_at >= since)
            counted = int(s.execute(q).scalar_one()) < per_key
        row = FeedbackRow(request_id=request_id, version_id=req.version_id, score=score, label=storable(label),
                          comment=storable(comment), key_id=key_id, counted=counted, created_at=utcnow())
        s.add(row)
        s.flush()
        ledger_mod.append(s, actor=actor, kind="feedback", subject=req.version_id, payload={
            "feedback_id": row.id, "request_id": request_id, "score": score, "label": row.label, "key_id": key_id,
            "counted": counted, "replaces": before.id if before is not None else None})
        return _feedback(row)


def _latest(rows: Sequence[FeedbackRow]) -> list[FeedbackRow]:
    """The latest rating of each answer (rows oldest first), in the order of those latest ratings."""
    last: dict[str, FeedbackRow] = {}
    for r in rows:
        last.pop(r.request_id, None)
        last[r.request_id] = r
    return list(last.values())


def feedback(store: Store, version_id: str, *, since: datetime | None = None,
             counted_only: bool = False) -> list[FeedbackRecord]:
    """Each answer's rating (its latest) of a version's answers, rated since ``since``, oldest first;
    ``counted_only``: only those the canary analysis counts."""
    with store.db.read() as s:
        q = select(FeedbackRow).where(FeedbackRow.version_id == version_id)
        if since is not None:  # a rating before it is never an answer's latest when one after it exists
            q = q.where(FeedbackRow.created_at >= since)
        rows = _latest(s.execute(q.order_by(FeedbackRow.id)).scalars().all())
        return [_feedback(r) for r in rows if r.counted or not counted_only]


def rated_requests(store: Store, line: str) -> list[tuple[RequestRecord, FeedbackRecord]]:
    """Every rated answer of a line with its rating (the latest), oldest rating first (``feedback export``)."""
    with store.db.read() as s:
        q = (select(GatewayRequestRow, FeedbackRow).join(FeedbackRow, FeedbackRow.request_id == GatewayRequestRow.id)
             .where(GatewayRequestRow.line == line).order_by(FeedbackRow.id))
        pairs = s.execute(q).all()
        latest = {f.id for f in _latest([f for _, f in pairs])}
        return [(_request(r), _feedback(f)) for r, f in pairs if f.id in latest]


# ------------------------------------------------------------------------------------------- canary checks


def canary_checks(store: Store, line: str, canary_version: str | None = None) -> list[CanaryCheck]:
    with store.db.read() as s:
        q = select(CanaryCheckRow).where(CanaryCheckRow.line == line)
        if canary_version is not None:
            q = q.where(CanaryCheckRow.canary_version == canary_version)
        return [CanaryCheck(id=r.id, line=r.line, canary_version=r.canary_version,
                            production_version=r.production_version, verdict=r.verdict, outcome=r.outcome,
                            consecutive_failures=r.consecutive_failures, evidence=dict(r.evidence),
                            created_at=r.created_at)
                for r in s.execute(q.order_by(CanaryCheckRow.id)).scalars()]


def record_canary_check(store: Store, *, line: str, canary_version: str, production_version: str, verdict: str,
                        outcome: str, consecutive_failures: int, evidence: dict[str, Any],
                        moves: Sequence[tuple[str, str, str, str, int | None]] = (), reason: str = "",
                        actor: str = "loopgate") -> tuple[CanaryCheck | None, list[ChannelMove]]:
    """Record one canary measurement and, when it concludes the canary, the channel moves it makes —
    ``(line, channel, version, kind, decision_id)`` each — in ONE transaction with their ledger entries: the
    ledger's ``canary.check`` entry carries the verdict and its evidence, the moves name it as their reason.

    Several processes may analyse one canary (two gateways, ``loopgate canary status --analyse``). Under the
    ledger lock this transaction holds, a measurement whose canary was concluded since it was read (the channels
    moved), or that repeats the last recorded one (the same sample sizes), records nothing: ``(None, [])``. So a
    canary is rolled back or promoted once, and a failure is counted once, however many processes look."""
    done: list[ChannelMove] = []
    with store.db.tx() as s:
        ledger_mod.lock_head(s)
        live = {r.name: r.version_id for r in s.execute(select(ChannelRow).where(ChannelRow.line == line)).scalars()}
        if live.get("canary") != canary_version or live.get("production") != production_version:
            return None, []
        last = s.execute(select(CanaryCheckRow).where(CanaryCheckRow.canary_version == canary_version)
                         .order_by(CanaryCheckRow.id.desc()).limit(1)).scalar_one_or_none()
        if last is not None and last.evidence.get("sizes") == evidence.get("sizes"):
            return None, []
        row = CanaryCheckRow(line=line, canary_version=canary_version, production_version=production_version,
                             verdict=verdict, outcome=outcome, consecutive_failures=consecutive_failures,
                             evidence=evidence, created_at=utcnow())
        s.add(row)
        s.flush()
        ledger_mod.append(s, actor=actor, kind="canary.check", subject=canary_version, payload={
            "check_id": row.id, "line": line, "production": production_version, "verdict": verdict,
            "outcome": outcome, "consecutive_failures": consecutive_failures, "evidence": evidence})
        why = reason or f"canary check {row.id}: {outcome}"
        for mline, channel, version_id, kind, decision_id in moves:
            done.append(move_in(s, store.artifacts, mline, channel, version_id, kind=kind, reason=why, actor=actor,
                                decision_id=decision_id, extra={"canary_check": row.id}))
        check = CanaryCheck(id=row.id, line=line, canary_version=canary_version,
                            production_version=production_version, verdict=verdict, outcome=outcome,
                            consecutive_failures=consecutive_failures, evidence=evidence, created_at=row.created_at)
    return check, done
