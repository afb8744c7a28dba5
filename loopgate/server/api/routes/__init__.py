"""The REST API's routes, one module per resource; each adds its routes to the API's router with the
:class:`Api` context (the workspace, the role each route declares, the write lock, the job runner)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from fastapi import Depends

from loopgate.loop.workspace import Workspace
from loopgate.server.api.jobs import JobRunner
from loopgate.server.auth import RoleRequirement

PREFIX = "/api/v1"


@dataclass(frozen=True)
class Api:
    """What every route module needs. A route's role is the default of its token parameter
    (``token: TokenInfo = api.releaser``)."""

    ws: Workspace
    writing: threading.Lock  # one mutating verb at a time in this process
    jobs: JobRunner  # long verbs (update) run here, off the request
    viewer: Any
    releaser: Any
    approver: Any
    admin: Any

    @classmethod
    def open(cls, ws: Workspace) -> Api:
        writing = threading.Lock()
        viewer, releaser, approver, admin = (Depends(RoleRequirement(role, ws, cookie=False))
                                             for role in ("viewer", "releaser", "approver", "admin"))
        return cls(ws, writing, JobRunner(writing), viewer, releaser, approver, admin)
