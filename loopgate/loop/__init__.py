"""The service layer: every verb of the loop, one function each, shared by every front end (the CLI, the REST
API, the dashboard, the gateway, tuning trials). Each verb returns a typed outcome (:mod:`.outcomes`).

Where things live (read each top to bottom):
- :mod:`.updating`     ``update``: train a candidate from the right starting point, release it, run the wave;
                       resume
- :mod:`.gating`       baselines, the gate context, the one decision function, releasing a version
- :mod:`.propagation`  the downstream wave: plan, re-derive children by capability transfer
- :mod:`.channels`     the verbs that move channels: release, approve, promote, rollback
- :mod:`.rules`        who may do what (two-person rule, roles, pins, forced rollbacks)
- :mod:`.data`         which data a run trains on and rehearses (replay)
- :mod:`.evaluation`   evaluating, comparing and profiling versions through the cache, as jobs
- :mod:`.versions`     registering models, loadable weights, lineage, status

Names are imported on first use (PEP 562, the module's ``__getattr__``): ``loopgate status`` reads the registry
and must not pay for torch, which the training and evaluation verbs import. The ``update`` verb lives in
:mod:`.updating`: a submodule named ``update`` would replace the verb on this package once imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from loopgate.loop.planning import plan
    from loopgate.loop.propagation import propagate_from
    from loopgate.loop.updating import resume, train_candidate, update
    from loopgate.loop.versions import ecosystem_status, register_model, version_lineage
    from loopgate.loop.workspace import Workspace, current_user

_WHERE = {
    **dict.fromkeys(("approve", "promote", "release", "rollback"), "channels"),
    **dict.fromkeys(("compare_versions", "evaluate_line_suites", "import_evaluations"), "evaluation"),
    **dict.fromkeys(("Lineage", "PlanStep", "PromoteOutcome", "PropagationOutcome", "ReleaseOutcome",
                     "ResumeOutcome", "RollbackOutcome", "StatusRow"), "outcomes"),
    "plan": "planning",
    "propagate_from": "propagation",
    **dict.fromkeys(("resume", "train_candidate", "update"), "updating"),
    **dict.fromkeys(("ecosystem_status", "register_model", "version_lineage"), "versions"),
    **dict.fromkeys(("Workspace", "current_user"), "workspace"),
}


def __getattr__(name: str) -> Any:
    """A verb or an outcome, imported from its module on first use (then bound here like any global)."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


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
