"""Where the registry tables used to live: every table, re-exported from :mod:`loopgate.store.tables` (one
module per entity) for code that still imports them from here."""

from loopgate.store.tables import (
    HEAD_ID,
    ApprovalRow,
    ArtifactRow,
    Base,
    CanaryCheckRow,
    ChannelMoveRow,
    ChannelRow,
    DecisionRow,
    EvaluationRow,
    FeedbackRow,
    GatewayKeyRow,
    GatewayRequestRow,
    LedgerHeadRow,
    LedgerRow,
    LinePinRow,
    LineRow,
    StepRow,
    TokenRow,
    VersionFileRow,
    VersionRow,
)

__all__ = [
    "HEAD_ID", "ApprovalRow", "ArtifactRow", "Base", "CanaryCheckRow", "ChannelMoveRow", "ChannelRow",
    "DecisionRow", "EvaluationRow", "FeedbackRow", "GatewayKeyRow", "GatewayRequestRow", "LedgerHeadRow",
    "LedgerRow", "LinePinRow", "LineRow", "StepRow", "TokenRow", "VersionFileRow", "VersionRow",
]
