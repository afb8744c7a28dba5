"""Pinned lines (#24 item 7): ``loopgate pin LINE`` keeps a line on its parent version through upgrades.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "line_pins",
        sa.Column("line", sa.String(200), sa.ForeignKey("lines.name"), primary_key=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("production", sa.String(220), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("line_pins")
