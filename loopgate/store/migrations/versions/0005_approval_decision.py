"""Approvals bind to one decision (#26): an approval approves the decision it names, once.

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


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("decision_id")
