"""Feedback abuse guards (#26 item 6): the API key behind each request and rating, and whether a rating counts
for the canary analysis (one key's ratings count at most ``GatewaySettings.feedback_per_key`` per version).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_requests") as batch:
        batch.add_column(sa.Column("key_id", sa.Integer, nullable=True))
    # ratings made before this revision carry no key: they count, as they did
    with op.batch_alter_table("gateway_feedback") as batch:
        batch.add_column(sa.Column("key_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("counted", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.create_index("ix_gateway_feedback_key_id", ["key_id"])


def downgrade() -> None:
    with op.batch_alter_table("gateway_feedback") as batch:
        batch.drop_index("ix_gateway_feedback_key_id")
        batch.drop_column("counted")
        batch.drop_column("key_id")
    with op.batch_alter_table("gateway_requests") as batch:
        batch.drop_column("key_id")
