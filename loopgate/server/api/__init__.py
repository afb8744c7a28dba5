"""The REST API under ``/api/v1``: the service layer's verbs (:mod:`loopgate.loop`) over HTTP, returning the
same pydantic outcomes the CLI prints with ``--json``.

Every route declares its role (:mod:`.auth`), which the OpenAPI document lists as bearer auth; every error
answers JSON ``{"error", "message"}`` (:mod:`.errors`) with the CLI's message (401 no or a bad token, 403 a role
that is not enough or the two-person rule, 404 not found, 409 conflict, 400 a refused request or any other
user error). A release the gates block
is not an error: ``POST …/release`` answers 200 with ``released: false`` and the decision (the CLI exits 3).
Mutating verbs run one at a time and act as the token's name (recorded in the ledger).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi import Path as FastPath

from loopgate import loop
from loopgate.errors import LoopgateError, NotFoundError
from loopgate.loop.audit import collect_garbage, verify
from loopgate.loop.evaluation import Comparison
from loopgate.loop.outcomes import (
    AuditReport,
    ChannelReport,
    GcOutcome,
    Lineage,
    PlanStep,
    PromoteOutcome,
    ReleaseOutcome,
    RollbackOutcome,
    StatusRow,
    VersionView,
)
from loopgate.loop.versions import channel_report, line_versions
from loopgate.loop.workspace import Workspace
from loopgate.records import Decision, Evaluation
from loopgate.report.content import ReleaseNotes, release_notes
from loopgate.server.api.auth import LoopgateRoute, RoleRequirement
from loopgate.server.api.bodies import (
    ApproveBody,
    GcBody,
    LineSummaryPage,
    PromoteBody,
    RollbackBody,
    TokenBody,
    UpdateBody,
    VersionDetail,
)
from loopgate.server.api.errors import ErrorBody
from loopgate.server.api.jobs import Job, JobRunner
from loopgate.store.pages import LedgerPage, ledger_page, line_summaries
from loopgate.store.tokens import NewToken, TokenInfo, create_token, list_tokens, revoke_token

PREFIX = "/api/v1"
# one entry for every 4xx (the kinds are in ErrorBody's description); it also keeps FastAPI from listing its 422
ERRORS: dict[int | str, dict[str, Any]] = {"4XX": {"model": ErrorBody, "description": "a refused request: "
                                                   "400 invalid, 401 no or a bad token, 403 not allowed, 404 not "
                                                   "found, 409 a conflict with recorded state"}}


def data_paths(ws: Workspace, names: list[str]) -> list[Path]:
    """Update data a client names: JSONL files inside the workspace folder (links resolved first), nothing else."""
    root = ws.root.resolve()
    out = []
    for name in names:
        try:
            path = (root / name).resolve()
            inside = path.is_relative_to(root) and path.suffix == ".jsonl" and path.is_file()
        except (OSError, ValueError):  # a NUL in the name, a name longer than the file system allows
            raise LoopgateError(f"data {name[:80]!r} is not a file name this system can open; name update data "
                                "relative to the workspace folder, e.g. data/support-2.jsonl") from None
        if not path.is_relative_to(root) or path.suffix != ".jsonl":
            raise LoopgateError(f"data '{name}' is not a JSONL file inside the workspace; name update data "
                                "relative to the workspace folder, e.g. data/support-2.jsonl")
        if not inside:
            raise NotFoundError(f"data file {name}: no such file in the workspace")
        out.append(path)
    return out


def approve_as(ws: Workspace, version_id: str, token: TokenInfo, reason: str, overrides: list[str]
               ) -> ReleaseOutcome:
    """``loop.approve`` as a token's identity: the rules (two-person, one decision, the token's creator) are
    :mod:`loopgate.loop.rules`'s, the same for every front end."""
    return loop.approve(ws, version_id, token.name, reason, overrides, token_created_by=token.created_by)


def tier_order(ws: Workspace) -> list[str]:
    """The spec's lines in tier order (computed once: the spec is fixed while the app runs)."""
    cached: list[str] | None = getattr(ws, "_tier_order", None)
    if cached is None:
        names = list(ws.eco.lines)
        at = {n: i for i, n in enumerate(names)}
        cached = sorted(names, key=lambda n: (ws.eco.lines[n].tier.rank, at[n]))
        ws._tier_order = cached  # type: ignore[attr-defined]
    return cached


def router(ws: Workspace) -> APIRouter:
    r = APIRouter(prefix=PREFIX, route_class=LoopgateRoute, tags=["api"], responses=ERRORS)
    writing = threading.Lock()  # one mutating verb at a time in this process
    jobs = JobRunner(writing)  # long verbs (update) run here, off the request

    def requires(role: str) -> Any:
        return Depends(RoleRequirement(role, ws, cookie=False))

    # a route's role is the default of its token parameter (a closure: annotations here are strings)
    viewer, releaser, approver, admin = (requires(x) for x in ("viewer", "releaser", "approver", "admin"))

    @r.get("/me", response_model=TokenInfo)
    def me(token: TokenInfo = viewer) -> TokenInfo:
        """The calling token (its name and role)."""
        return token

    @r.get("/lines", response_model=list[StatusRow])
    def lines(_: TokenInfo = viewer) -> list[StatusRow]:
        """Every line with its channels, latest version and pinning (``loopgate status``)."""
        return loop.ecosystem_status(ws)

    @r.get("/line-summaries", response_model=LineSummaryPage)
    def line_summary_page(_: TokenInfo = viewer, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                          limit: Annotated[int, Query(ge=1, le=500)] = 100) -> LineSummaryPage:
        """A page of lines in tier order — channels, latest version, its latest verdict, the parent version
        production was built on — in a bounded number of queries (``/lines`` returns every line)."""
        order = tier_order(ws)
        names = order[offset:offset + limit]
        found = line_summaries(ws.store, names)
        return LineSummaryPage(offset=offset, limit=limit, total=len(order),
                               lines=[found[n] for n in names if n in found])

    @r.get("/lines/{line}/versions", response_model=list[VersionView])
    def versions(line: str, _: TokenInfo = viewer) -> list[VersionView]:
        return line_versions(ws, line)

    @r.get("/lines/{line}/channels", response_model=ChannelReport)
    def channels(line: str, _: TokenInfo = viewer) -> ChannelReport:
        """Where the channels point, the rollback target, and every move with its actor and reason."""
        return channel_report(ws, line)

    @r.get("/versions/{version_id}", response_model=VersionDetail)
    def version(version_id: str, _: TokenInfo = viewer) -> VersionDetail:
        v = ws.store.version(version_id)
        chans = ws.store.channels(v.line)
        return VersionDetail(version=VersionView(**v.model_dump(), channels=[c for c, x in chans.items()
                                                                             if x == version_id]),
                             decisions=ws.store.decisions(version_id), approvals=ws.store.approvals(version_id))

    @r.get("/versions/{version_id}/lineage", response_model=Lineage)
    def lineage(version_id: str, _: TokenInfo = viewer) -> Lineage:
        return loop.version_lineage(ws, version_id)

    @r.get("/versions/{version_id}/evaluations", response_model=list[Evaluation])
    def evaluations(version_id: str, _: TokenInfo = viewer) -> list[Evaluation]:
        """The stored evaluations (per-example outcomes included); nothing is run."""
        ws.store.version(version_id)
        return ws.store.evaluations(version_id)

    @r.get("/versions/{version_id}/decisions", response_model=list[Decision])
    def decisions(version_id: str, _: TokenInfo = viewer) -> list[Decision]:
        """Every decision on the version, each gate with its verdict and evidence."""
        ws.store.version(version_id)
        return ws.store.decisions(version_id)

    @r.get("/versions/{version_id}/plan", response_model=list[PlanStep])
    def plan(version_id: str, _: TokenInfo = viewer) -> list[PlanStep]:
        """The downstream wave releasing the version would start (runs nothing)."""
        return loop.plan(ws, version_id)

    @r.get("/versions/{version_id}/report", response_model=ReleaseNotes)
    def report(version_id: str, _: TokenInfo = viewer) -> ReleaseNotes:
        """The release notes' content: suites with paired comparisons, flips, the decision, costs."""
        return release_notes(ws, version_id)

    @r.get("/compare", response_model=Comparison)
    def compare(a: str, b: str, _: TokenInfo = viewer) -> Comparison:
        """Per-suite deltas of B against A with paired intervals (evaluates through the cache if needed)."""
        return loop.compare_versions(ws, a, b)

    @r.get("/ledger", response_model=LedgerPage)
    def ledger(_: TokenInfo = viewer, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
               limit: Annotated[int, Query(ge=1, le=500)] = 50) -> LedgerPage:
        """A page of the ledger, newest first."""
        return ledger_page(ws.store, offset, limit)

    @r.get("/ledger/verify", response_model=AuditReport)
    def ledger_verify(_: TokenInfo = viewer) -> AuditReport:
        """The hash chain walked end to end and checked against the head anchor."""
        return verify(ws)

    @r.post("/lines/{line}/update", response_model=ReleaseOutcome | Job,
            responses={202: {"model": Job, "description": "the update is a job: poll its Location"}})
    def update(line: str, body: UpdateBody, response: Response, token: TokenInfo = releaser,
               wait: Annotated[bool, Query(description="answer when the update is done (200, its outcome) "
                                                       "instead of at once (202, a job to poll)")] = False
               ) -> ReleaseOutcome | Job:
        """Train a candidate on the named data, gate it, release it if allowed, propagate (``loopgate update``).
        Training takes minutes, so by default it is a job: 202 with the job, polled at ``/jobs/{id}`` (its
        ``result`` is the outcome; ``released`` says whether it shipped). ``?wait=true``: 200 with the outcome."""
        ws.eco.line(line)  # an unknown line is a 404 now, not a failed job later
        paths = data_paths(ws, body.data)

        def work() -> ReleaseOutcome:
            return loop.update(ws, line, paths, recipe_name=body.recipe, seed=body.seed, actor=token.name)

        if wait:
            with writing:
                return work()
        job = jobs.submit("update", line, token.name, work)
        response.status_code = 202
        response.headers["Location"] = f"{PREFIX}/jobs/{job.id}"
        return job

    @r.get("/jobs", response_model=list[Job])
    def job_list(_: TokenInfo = viewer) -> list[Job]:
        """This server's jobs, newest first (kept in memory: the last 200)."""
        return jobs.jobs()

    @r.get("/jobs/{job_id}", response_model=Job)
    def job(job_id: str, _: TokenInfo = viewer) -> Job:
        """One job: ``queued``, ``running``, ``succeeded`` (with ``result``) or ``failed`` (with ``error``)."""
        return jobs.get(job_id)

    @r.post("/versions/{version_id}/release", response_model=ReleaseOutcome)
    def release(version_id: str, token: TokenInfo = releaser) -> ReleaseOutcome:
        """Gate the version and release it if the gates allow (200 either way: read ``released``)."""
        with writing:
            return loop.release(ws, version_id, actor=token.name)

    @r.post("/versions/{version_id}/approve", response_model=ReleaseOutcome)
    def approve(version_id: str, body: ApproveBody, token: TokenInfo = approver) -> ReleaseOutcome:
        """Approve as the token's name (never the author or the requester), then decide again."""
        with writing:
            return approve_as(ws, version_id, token, body.reason, body.overrides)

    @r.post("/versions/{version_id}/promote", response_model=PromoteOutcome)
    def promote(version_id: str, body: PromoteBody, token: TokenInfo = releaser) -> PromoteOutcome:
        with writing:
            return loop.promote(ws, version_id, body.channel, actor=token.name)

    @r.post("/lines/{line}/rollback", response_model=RollbackOutcome)
    def rollback(line: str, body: RollbackBody, token: TokenInfo = releaser) -> RollbackOutcome:
        with writing:
            return loop.rollback(ws, line, to=body.to, reason=body.reason, actor=token.name, force=body.force,
                                 role=token.role)

    @r.get("/tokens", response_model=list[TokenInfo])
    def tokens(_: TokenInfo = admin) -> list[TokenInfo]:
        return list_tokens(ws.store, include_revoked=True)

    @r.post("/tokens", response_model=NewToken, status_code=201)
    def token_create(body: TokenBody, token: TokenInfo = admin) -> NewToken:
        """A new token (its secret is in this answer only)."""
        return create_token(ws.store, role=body.role, name=body.name, actor=token.name)

    @r.delete("/tokens/{token_id}", response_model=TokenInfo)
    def token_revoke(token_id: Annotated[int, FastPath(ge=1, le=2**31 - 1)], token: TokenInfo = admin) -> TokenInfo:
        return revoke_token(ws.store, token_id, actor=token.name)

    @r.post("/gc", response_model=GcOutcome)
    def gc(body: GcBody, token: TokenInfo = admin) -> GcOutcome:
        """Collect artifacts no channel needs (a dry run unless ``dry_run`` is false)."""
        with writing:
            return collect_garbage(ws, keep_latest=body.keep_latest, dry_run=body.dry_run, actor=token.name)

    return r
