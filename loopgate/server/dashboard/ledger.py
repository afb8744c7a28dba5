"""The ledger page: entries newest first, filtered by kind and actor, with the last verification of the chain
(walked again in the background when entries were appended since)."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime

from pydantic import BaseModel

from loopgate.errors import printable
from loopgate.loop.audit import verify
from loopgate.loop.outcomes import AuditReport
from loopgate.loop.workspace import Workspace
from loopgate.store.pages import LedgerPage, ledger_page
from loopgate.store.release_reads import MAX_ACTORS, filtered_ledger_page, has_actor, ledger_actors, ledger_kinds

_verified: dict[str, tuple[tuple[int, str], AuditReport, datetime]] = {}
_verify_lock = threading.Lock()
_walking: dict[str, threading.Thread] = {}
# a page waits this long for a chain walk it started; a longer walk finishes in the background
WAIT_FOR_WALK_S = 0.1
MAX_ACTOR_CHARS = 200  # the ledger's actor column


class LedgerView(BaseModel):
    page: LedgerPage
    pages: int
    number: int
    verification: AuditReport | None
    verified_at: datetime | None
    verified_head: int | None
    stale: bool
    walking: bool
    kind: str = ""  # the filters applied ("" = any)
    actor: str = ""
    kinds: list[str] = []  # what the filter form offers
    actors: list[str] = []
    problem: str = ""  # why a filter was refused (the page then lists no entries)
    all_entries: int = 0  # in the whole ledger, whatever the filters


def _head(ws: Workspace) -> tuple[int, str]:
    top = ledger_page(ws.store, 0, 1)
    return top.total, top.entries[0].hash if top.entries else ""


def verify_now(ws: Workspace) -> AuditReport:
    """Walk the whole chain now and remember the result for the ledger page."""
    with _verify_lock:
        key = _head(ws)
        report = verify(ws)
        _verified[str(ws.root.resolve())] = (key, report, datetime.now(UTC))
        return report


def _walk_in_background(ws: Workspace) -> threading.Thread:
    where = str(ws.root.resolve())
    running = _walking.get(where)
    if running is None or not running.is_alive():
        running = threading.Thread(target=verify_now, args=(ws,), daemon=True, name="ledger-verify")
        _walking[where] = running
        running.start()
    return running


def filter_problem(ws: Workspace, kind: str, actor: str, kinds: list[str], actors: list[str]) -> str:
    """Why ``kind`` or ``actor`` cannot filter this ledger ("" when both can). An actor is checked for text a
    database can compare before it reaches a query (a NUL fails on PostgreSQL)."""
    if kind and kind not in kinds:
        return f"no ledger entry has kind {printable(kind)!r}; kinds in this ledger: {', '.join(kinds)}"
    if actor:
        storable = (len(actor) <= MAX_ACTOR_CHARS and printable(actor) == actor)
        known = actor in actors or (storable and len(actors) >= MAX_ACTORS and has_actor(ws.store, actor))
        if not known:
            shown = ", ".join(actors[:30]) + (" …" if len(actors) > 30 else "")
            return f"no ledger entry was written by {printable(actor[:MAX_ACTOR_CHARS])!r}; actors: {shown}"
    return ""


def ledger_page_view(ws: Workspace, number: int, per_page: int, kind: str = "", actor: str = "") -> LedgerView:
    """A page of the ledger (newest first), filtered by ``kind`` and ``actor`` ("" = any), with the last full
    verification of the chain. When entries were appended since, the chain is walked again in the background
    (the page waits briefly for it, so a small ledger shows a fresh result at once, and a large one never
    holds the page up). An unknown kind or actor lists no entries and says why in ``problem``."""
    kinds, actors = ledger_kinds(ws.store), ledger_actors(ws.store)
    problem = filter_problem(ws, kind, actor, kinds, actors)
    total = ledger_page(ws.store, 0, 1)
    if problem:
        page = LedgerPage(offset=0, limit=per_page, total=0, entries=[])
    else:
        count = filtered_ledger_page(ws.store, 0, 0, kind=kind or None, actor=actor or None).total
        number = min(number, max(1, math.ceil(count / per_page)))
        page = filtered_ledger_page(ws.store, (number - 1) * per_page, per_page, kind=kind or None,
                                    actor=actor or None)
    pages = max(1, math.ceil(page.total / per_page))
    key = (total.total, total.entries[0].hash if total.entries else "")
    where = str(ws.root.resolve())
    known = _verified.get(where)
    walking = False
    if known is None or known[0] != key:
        walker = _walk_in_background(ws)
        walker.join(WAIT_FOR_WALK_S)
        walking = walker.is_alive()
        known = _verified.get(where)
    return LedgerView(page=page, pages=pages, number=min(number, pages), verification=known[1] if known else None,
                      verified_at=known[2] if known else None, verified_head=known[0][0] if known else None,
                      stale=known is None or known[0] != key, walking=walking, kind=kind if not problem else "",
                      actor=actor if not problem else "", kinds=kinds, actors=actors, problem=problem,
                      all_entries=total.total)
