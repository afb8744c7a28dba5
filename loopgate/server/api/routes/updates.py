"""``/lines/{line}/update`` and ``/jobs…``: an update, by default as a job polled at ``/jobs/{id}``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response

from loopgate import loop
from loopgate.errors import LoopgateError, NotFoundError
from loopgate.loop.outcomes import ReleaseOutcome
from loopgate.loop.workspace import Workspace
from loopgate.server.api.bodies import UpdateBody
from loopgate.server.api.jobs import Job
from loopgate.server.api.routes import PREFIX, Api
from loopgate.store.tokens import TokenInfo


def client_data_files(ws: Workspace, names: list[str]) -> list[Path]:
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


def add_routes(r: APIRouter, api: Api) -> None:
    ws, jobs = api.ws, api.jobs

    @r.post("/lines/{line}/update", response_model=ReleaseOutcome | Job,
            responses={202: {"model": Job, "description": "the update is a job: poll its Location"}})
    def update(line: str, body: UpdateBody, response: Response, token: TokenInfo = api.releaser,
               wait: Annotated[bool, Query(description="answer when the update is done (200, its outcome) "
                                                       "instead of at once (202, a job to poll)")] = False
               ) -> ReleaseOutcome | Job:
        """Train a candidate on the named data, gate it, release it if allowed, propagate (``loopgate update``).
        Training takes minutes, so by default it is a job: 202 with the job, polled at ``/jobs/{id}`` (its
        ``result`` is the outcome; ``released`` says whether it shipped). ``?wait=true``: 200 with the outcome."""
        ws.eco.line(line)  # an unknown line is a 404 now, not a failed job later
        paths = client_data_files(ws, body.data)

        def work() -> ReleaseOutcome:
            return loop.update(ws, line, paths, recipe_name=body.recipe, seed=body.seed, actor=token.name)

        if wait:
            with api.writing:
                return work()
        job = jobs.submit("update", line, token.name, work)
        response.status_code = 202
        response.headers["Location"] = f"{PREFIX}/jobs/{job.id}"
        return job

    @r.get("/jobs", response_model=list[Job])
    def job_list(_: TokenInfo = api.viewer) -> list[Job]:
        """This server's jobs, newest first (kept in memory: the last 200)."""
        return jobs.jobs()

    @r.get("/jobs/{job_id}", response_model=Job)
    def job(job_id: str, _: TokenInfo = api.viewer) -> Job:
        """One job: ``queued``, ``running``, ``succeeded`` (with ``result``) or ``failed`` (with ``error``)."""
        return jobs.get(job_id)
