"""Approvals bind to one decision (#26): an approval approves the decision it names, once; the ledger is
indexed by (kind, subject) so a channel move can read its decision's entry.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # approvals recorded before this revision name no decision: they approve nothing a release can reuse
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("decision_id", sa.Integer, nullable=True))
    # a channel move reads its decision's ledger entry (a decision row edited beside the ledger moves nothing)
    op.create_index("ix_ledger_kind_subject", "ledger", ["kind", "subject"])


def downgrade() -> None:
    op.drop_index("ix_ledger_kind_subject", "ledger")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("decision_id")
