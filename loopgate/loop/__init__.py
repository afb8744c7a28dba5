"""The service layer: every verb of the loop, one function each, shared by every front end (the CLI, the REST
API, the dashboard, the gateway, tuning trials). Each verb returns a typed outcome (:mod:`.outcomes`).

Where things live (read each top to bottom):
- :mod:`.update`       train a candidate from the right starting point, release it, run the wave; resume
- :mod:`.gating`       baselines, the gate context, the one decision function, releasing a version
- :mod:`.propagation`  the downstream wave: plan, re-derive children by capability transfer
- :mod:`.channels`     the verbs that move channels: release, approve, promote, rollback
- :mod:`.data`         which data a run trains on and rehearses (replay)
- :mod:`.evaluation`   evaluating, comparing and profiling versions through the cache, as jobs
- :mod:`.versions`     registering models, loadable weights, lineage, status
"""

from loopgate.loop.channels import approve, promote, release, rollback
from loopgate.loop.evaluation import compare_versions, evaluate_line_suites, import_evaluations
from loopgate.loop.outcomes import (
    Lineage,
    PlanStep,
    PromoteOutcome,
    PropagationOutcome,
    ReleaseOutcome,
    ResumeOutcome,
    RollbackOutcome,
    StatusRow,
)
from loopgate.loop.propagation import plan, propagate_from
from loopgate.loop.update import resume, train_candidate, update
from loopgate.loop.versions import ecosystem_status, register_model, version_lineage
from loopgate.loop.workspace import Workspace, current_user

__all__ = [
    "Lineage",
    "PlanStep",
    "PromoteOutcome",
    "PropagationOutcome",
    "ReleaseOutcome",
    "ResumeOutcome",
    "RollbackOutcome",
    "StatusRow",
    "Workspace",
    "approve",
    "compare_versions",
    "current_user",
    "ecosystem_status",
    "evaluate_line_suites",
    "import_evaluations",
    "plan",
    "promote",
    "propagate_from",
    "register_model",
    "release",
    "resume",
    "rollback",
    "train_candidate",
    "update",
    "version_lineage",
]
