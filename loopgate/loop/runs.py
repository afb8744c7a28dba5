"""The record of ``loopgate update`` runs, kept in the store's ``steps`` table under ``run:<id>``: every run is
``started``, then ``done`` or ``failed``; one that a user gives up on is ``abandoned`` (``resume`` skips it).

Listing and abandoning runs reads and writes only that table and the ledger: no model library is imported, so
``loopgate runs list`` is as quick as ``loopgate status``.
"""

from __future__ import annotations

import traceback
from typing import Any, Literal

from pydantic import BaseModel

from loopgate.errors import LoopgateError, NotFoundError
from loopgate.loop.workspace import Workspace, current_user
from loopgate.records import utcnow

RunStatus = Literal["started", "failed", "done", "abandoned"]
RUN_STATUSES: tuple[RunStatus, ...] = ("started", "failed", "done", "abandoned")
PREFIX = "run:"
TRACEBACK_CHARS = 4000  # the end of a failed run's traceback, kept for a bug report


class RunRecord(BaseModel):
    """One update run: what it was asked to do, where it stands, and how it ended."""

    run: str
    status: RunStatus
    line: str | None = None
    data: list[str] = []
    recipe: str | None = None
    seed: int | None = None
    actor: str | None = None
    at: str | None = None  # when the status last changed (ISO 8601, UTC); absent on runs recorded before it was kept
    version: str | None = None  # done: the version it built
    released: bool | None = None
    error: str | None = None  # failed: the error's type and message
    traceback: str | None = None  # failed on an error that is not a LoopgateError: where it was raised
    reason: str | None = None  # abandoned: why, and by whom
    abandoned_by: str | None = None


def printable(text: str) -> str:
    """Text safe to print, store as JSON and send to PostgreSQL: lone surrogates (a "\\ud800" that JSON update
    data can hold) become escapes instead of breaking the write that reports them."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe(error: BaseException) -> str:
    """An error as a run records it: a LoopgateError's own message; anything else with its type."""
    if isinstance(error, LoopgateError):
        return printable(str(error))
    return printable(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)


def now() -> str:
    return utcnow().isoformat(timespec="seconds")


def mark_failed(ws: Workspace, run: str, args: dict[str, Any], error: BaseException, *, actor: str) -> str:
    """Record ``run`` as failed with the error (and, for a bug, the end of its traceback) in the steps table and
    the ledger; returns the recorded message."""
    message = describe(error)
    result: dict[str, Any] = {**args, "error": message, "at": now()}
    if not isinstance(error, LoopgateError):
        result["traceback"] = printable("".join(traceback.format_exception(error)))[-TRACEBACK_CHARS:]
    ws.store.set_step(PREFIX + run, "failed", result)
    close_training(ws, run, "failed")
    ws.store.record("update.fail", str(args.get("line")), {"run": run, "error": message}, actor=actor)
    return message


def close_training(ws: Workspace, run: str, status: RunStatus) -> None:
    """Close the training steps a run left ``started`` (killed mid-training, then resumed on changed data, or
    given up on): a started step means "running, or killed and resumable", and the dashboard shows its line
    as busy for as long as one is left."""
    for key, train in ws.store.open_steps("started"):
        if key.startswith("train:") and (train or {}).get("run") == run:
            ws.store.set_step(key, status, train)


def _record(run: str, status: RunStatus, result: dict[str, Any] | None) -> RunRecord:
    res = dict(result or {})
    line = res.get("line")
    if line is None and isinstance(res.get("version"), str):  # runs finished before their inputs were kept
        line = res["version"].rsplit("@", 1)[0]
    return RunRecord(run=run, status=status, line=line, data=list(res.get("data") or []),
                     recipe=res.get("recipe"), seed=res.get("seed"), actor=res.get("actor"), at=res.get("at"),
                     version=res.get("version"), released=res.get("released"), error=res.get("error"),
                     traceback=res.get("traceback"), reason=res.get("reason"), abandoned_by=res.get("abandoned_by"))


def list_runs(ws: Workspace, status: RunStatus | None = None) -> list[RunRecord]:
    """Update runs in ``status`` (every status if None): started first (interrupted, or running now), then
    failed, done and abandoned, oldest first within each."""
    if status is not None and status not in RUN_STATUSES:
        raise LoopgateError(f"unknown run status '{status}': use one of {', '.join(RUN_STATUSES)}")
    out: list[RunRecord] = []
    for s in (status,) if status else RUN_STATUSES:
        rows = [_record(key.removeprefix(PREFIX), s, result) for key, result in ws.store.open_steps(s)
                if key.startswith(PREFIX) and (result or {}).get("command", "update") == "update"]
        out += sorted(rows, key=lambda r: r.at or "")
    return out


def find_run(ws: Workspace, run: str) -> tuple[str, str, dict[str, Any]]:
    """A run by its id (as ``runs list`` prints it, with or without ``run:``) or a unique prefix of it:
    (id, status, recorded inputs)."""
    wanted = run.removeprefix(PREFIX)
    if not wanted or len(wanted) > 200 or not wanted.isascii() or not wanted.isalnum():
        # run ids are hex digests; anything else (a NUL, which PostgreSQL cannot even compare) names no run
        raise NotFoundError(f"no update run {run[:80]!r}: 'loopgate runs list' shows every run and its id")
    exact = ws.store.step(PREFIX + wanted)
    if exact is not None:
        return wanted, exact[0], dict(exact[1] or {})
    matches = [r for r in list_runs(ws) if wanted and r.run.startswith(wanted)]
    if len(matches) > 1:
        raise LoopgateError(f"'{run}' is the start of {len(matches)} run ids "
                            f"({', '.join(m.run for m in matches[:5])}); give more of the id")
    if not matches:
        raise NotFoundError(f"no update run '{run}': 'loopgate runs list' shows every run and its id")
    found = ws.store.step(PREFIX + matches[0].run)
    assert found is not None
    return matches[0].run, found[0], dict(found[1] or {})


def abandon_run(ws: Workspace, run: str, reason: str, *, actor: str | None = None) -> RunRecord:
    """Give up on a started (stuck) or failed run: recorded in the ledger, then marked ``abandoned`` so that
    ``resume`` neither re-runs nor reports it. Its version, if it built one, stays as it is."""
    actor = actor or current_user()
    if not reason.strip():
        raise LoopgateError("abandoning a run needs a reason (--reason TEXT): it is kept in the ledger")
    run_id, status, result = find_run(ws, run)
    if status == "done":
        raise LoopgateError(f"run {run_id} finished ({result.get('version', 'no version')}); only a started or "
                            "failed run can be abandoned")
    if status == "abandoned":
        raise LoopgateError(f"run {run_id} was abandoned already ({result.get('reason', '')!r}, by "
                            f"{result.get('abandoned_by', '?')})")
    # the ledger first: a crash between the two writes leaves the run resumable and the intent recorded,
    # never a run that silently stopped being resumed
    ws.store.record("run.abandon", str(result.get("line")),
                    {"run": run_id, "was": status, "reason": reason, "error": result.get("error"),
                     "data": result.get("data", [])}, actor=actor)
    close_training(ws, run_id, "abandoned")
    record = {**result, "reason": reason, "abandoned_by": actor, "at": now()}
    ws.store.set_step(PREFIX + run_id, "abandoned", record)
    return _record(run_id, "abandoned", record)
