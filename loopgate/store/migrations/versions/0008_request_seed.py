"""The sampling seed of each logged request (#22): a sampled answer can be reproduced from the log.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a seed is below 2**63 (the gateway's schema): a BigInteger on both databases; rows from before are greedy
    # or unknown, NULL either way
    with op.batch_alter_table("gateway_requests") as batch:
        batch.add_column(sa.Column("seed", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_requests") as batch:
        batch.drop_column("seed")
