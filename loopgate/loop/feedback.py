"""The user signal: API keys of the apps that send it, the request log, feedback joined to the version that
answered, and feedback exported into the next update.

``export`` turns rated answers into the three things the loop consumes (each a JSONL file):

- ``sft``: well-rated answers (score ≥ ``canary.bad_score``) as ``{"prompt", "completion"}`` rows — update data;
- ``dpo``: a preferred and a rejected answer to the same prompt as ``{"prompt", "chosen", "rejected"}`` rows;
- ``suite``: badly rated cases as a generation suite ``{"id", "prompt", "target"}``, the target being a
  well-rated answer to the same prompt or else the feedback's ``label`` (a correction); cases with neither are
  left out and counted. Declared as a suite of the line, it gates every later version: what broke in
  production is tested forever after.

Prompts are the text the model saw (the app's template applied); only requests logged with
``canary.log_text: full`` can be exported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from loopgate.errors import LoopgateError
from loopgate.loop.canary import CanaryStatus, analyse, line_state, model_line
from loopgate.loop.workspace import Workspace
from loopgate.store import gateway as gw
from loopgate.store.gateway import FeedbackRecord, KeyInfo, RequestRecord

ExportFormat = Literal["sft", "dpo", "suite"]
FORMATS: tuple[str, ...] = ("sft", "dpo", "suite")


class FeedbackOutcome(BaseModel):
    feedback: FeedbackRecord
    canary: CanaryStatus | None = None


class ExportOutcome(BaseModel):
    line: str
    format: str
    path: str | None
    rows: int
    rated: int  # rated answers considered
    skipped: dict[str, int] = {}  # why rated answers did not become rows


def create_key(ws: Workspace, app: str, *, actor: str) -> tuple[str, KeyInfo]:
    """A new API key for ``app`` (an app or a model line of the spec): the key, to show once, and what is kept."""
    ws.eco.line(app)  # a clear error for a name the spec does not declare
    return gw.create_key(ws.store, app, actor=actor)


def keys(ws: Workspace, *, include_revoked: bool = False) -> list[KeyInfo]:
    """The API keys (what is kept of them: id, app, prefix, who made them), live ones unless asked for all."""
    return gw.keys(ws.store, include_revoked=include_revoked)


def revoke_key(ws: Workspace, key_id: int, *, actor: str) -> KeyInfo:
    """Revoke an API key; a running gateway refuses it within ``GatewaySettings.key_recheck_s``."""
    return gw.revoke_key(ws.store, key_id, actor=actor)


def key_app(ws: Workspace, key: str) -> str | None:
    """The app an API key belongs to; None for an unknown or revoked key."""
    return gw.key_app(ws.store, key)


def key_identity(ws: Workspace, key: str) -> tuple[int, str] | None:
    """(id, app) of a live API key; None for an unknown or revoked key."""
    return gw.key_identity(ws.store, key)


def request(ws: Workspace, request_id: str) -> RequestRecord | None:
    """One logged request (None when the log has no such id)."""
    return gw.request(ws.store, request_id)


def log_requests(ws: Workspace, records: Sequence[RequestRecord]) -> None:
    """Append answered requests to the request log (the gateway calls this in batches)."""
    gw.log_requests(ws.store, records)


def add_feedback(ws: Workspace, request_id: str, score: float, *, label: str | None = None,
                 comment: str | None = None, actor: str | None = None, key_id: int | None = None,
                 per_key: int | None = None) -> FeedbackOutcome:
    """Join a score in [0, 1] to the version that answered ``request_id``; a live canary on its line is
    analysed again at once.

    An answer has one rating: rating it again replaces the first. With ``key_id`` and ``per_key``, the key's
    ratings count in the canary analysis for at most ``per_key`` answers per version since the canary went live
    (:func:`loopgate.store.gateway.add_feedback`)."""
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise LoopgateError(f"feedback score {score} is out of range; send a score between 0 (bad) and 1 (good)")
    req = gw.request(ws.store, request_id)
    state = line_state(ws, req.line) if req is not None else None
    since = state.since if state is not None and state.active else None
    fb = gw.add_feedback(ws.store, request_id, score, label=label, comment=comment, actor=actor or "gateway",
                         key_id=key_id, per_key=per_key if since is not None else None, since=since)
    assert req is not None  # add_feedback raised for an unknown request
    canary = analyse(ws, req.line, actor="gateway") if line_state(ws, req.line).active else None
    return FeedbackOutcome(feedback=fb, canary=canary)


def _rows(fmt: str, rated: list[tuple[RequestRecord, FeedbackRecord]], bad_score: float
          ) -> tuple[list[dict[str, str]], dict[str, int]]:
    skipped: dict[str, int] = {}

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    usable: list[tuple[str, str, float, FeedbackRecord]] = []
    for req, fb in rated:
        if req.prompt is None or req.output is None or req.prompt.startswith("sha256:"):
            skip("text not logged (canary.log_text is not 'full')")
            continue
        usable.append((req.prompt, req.output, fb.score, fb))
    by_prompt: dict[str, list[tuple[str, float, FeedbackRecord]]] = {}
    for prompt, output, score, fb in usable:
        by_prompt.setdefault(prompt, []).append((output, score, fb))
    rows: list[dict[str, str]] = []
    if fmt == "sft":
        seen: set[tuple[str, str]] = set()
        for prompt, output, score, _ in usable:
            if score < bad_score:
                skip("badly rated")
            elif (prompt, output) in seen:
                skip("duplicate")
            else:
                seen.add((prompt, output))
                rows.append({"prompt": prompt, "completion": output})
    elif fmt == "dpo":
        for prompt, answers in by_prompt.items():
            good = max(answers, key=lambda a: a[1])
            bad = min(answers, key=lambda a: a[1])
            if good[1] >= bad_score > bad[1] and good[0] != bad[0]:
                rows.append({"prompt": prompt, "chosen": good[0], "rejected": bad[0]})
            else:
                skip("no well- and badly-rated pair for the prompt")
    else:
        for i, (prompt, answers) in enumerate(by_prompt.items()):
            bads = [a for a in answers if a[1] < bad_score]
            if not bads:
                continue
            goods = sorted((a for a in answers if a[1] >= bad_score), key=lambda a: -a[1])
            labels = [a[2].label for a in bads if a[2].label]
            target = goods[0][0] if goods else (labels[-1] if labels else None)
            if target is None:
                skip("badly rated, but no good answer or correction (label) known")
                continue
            rows.append({"id": f"feedback-{i}", "prompt": prompt, "target": target})
    return rows, skipped


def export(ws: Workspace, line: str, fmt: str, out: Path | None = None) -> ExportOutcome:
    """Write ``line``'s rated answers as ``fmt`` rows (JSONL) to ``out``; without ``out`` only count them."""
    if fmt not in FORMATS:
        raise LoopgateError(f"unknown export format '{fmt}'; formats are {', '.join(FORMATS)}")
    line = model_line(ws, line)
    rated = gw.rated_requests(ws.store, line)
    rows, skipped = _rows(fmt, rated, ws.eco.policy_for(line).canary.bad_score)
    if out is not None:
        if not rows:
            raise LoopgateError(f"no {fmt} rows to export for '{line}' ({len(rated)} rated answers"
                                + (f"; skipped: {skipped}" if skipped else "") + ")")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return ExportOutcome(line=line, format=fmt, path=str(out) if out is not None else None, rows=len(rows),
                         rated=len(rated), skipped=skipped)

