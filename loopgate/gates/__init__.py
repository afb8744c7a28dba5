"""Release gates: pure functions of a :class:`GateContext` and a policy section → verdict with evidence.

One module per gate; :func:`loopgate.gates.policy.decide` runs them all and combines them into a
:class:`~loopgate.records.Decision`.
"""

from loopgate.gates.approval import approval
from loopgate.gates.context import ApprovalRecord, GateContext, RollbackCheck
from loopgate.gates.cost import cost
from loopgate.gates.inheritance import inheritance
from loopgate.gates.plasticity import plasticity
from loopgate.gates.policy import GATES, decide
from loopgate.gates.regression import regression
from loopgate.gates.rollback import rollback
from loopgate.gates.safety import safety

__all__ = [
    "GATES",
    "ApprovalRecord",
    "GateContext",
    "RollbackCheck",
    "approval",
    "cost",
    "decide",
    "inheritance",
    "plasticity",
    "regression",
    "rollback",
    "safety",
]
