"""Registry tables (SQLAlchemy 2 ORM), one module per entity. Portable SQL only: SQLite by default, PostgreSQL
for teams.

The schema is created and evolved by the Alembic migrations in ``store/migrations``; these classes are the ORM's
view of it, and a test checks that the two agree. Importing this package puts every table in ``Base.metadata``.
"""

from loopgate.store.tables.base import Base
from loopgate.store.tables.channels import ChannelMoveRow, ChannelRow
from loopgate.store.tables.decisions import ApprovalRow, DecisionRow
from loopgate.store.tables.evaluations import EvaluationRow
from loopgate.store.tables.gateway import CanaryCheckRow, FeedbackRow, GatewayKeyRow, GatewayRequestRow
from loopgate.store.tables.ledger import HEAD_ID, LedgerHeadRow, LedgerRow
from loopgate.store.tables.lines import LineRow
from loopgate.store.tables.pins import LinePinRow
from loopgate.store.tables.steps import StepRow
from loopgate.store.tables.tokens import TokenRow
from loopgate.store.tables.versions import ArtifactRow, VersionFileRow, VersionRow

__all__ = [
    "HEAD_ID", "ApprovalRow", "ArtifactRow", "Base", "CanaryCheckRow", "ChannelMoveRow", "ChannelRow",
    "DecisionRow", "EvaluationRow", "FeedbackRow", "GatewayKeyRow", "GatewayRequestRow", "LedgerHeadRow",
    "LedgerRow", "LinePinRow", "LineRow", "StepRow", "TokenRow", "VersionFileRow", "VersionRow",
]
