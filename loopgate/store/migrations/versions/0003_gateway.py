"""The production end: API keys per app, the request log, feedback, canary state (#13).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gateway_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("app", sa.String(200), sa.ForeignKey("lines.name"), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
    )
    op.create_table(
        "gateway_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("app", sa.String(200), nullable=True),
        sa.Column("line", sa.String(200), nullable=False),
        sa.Column("version_id", sa.String(220), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("user_hash", sa.String(64), nullable=True),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("prompt", sa.Text, nullable=True),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_gateway_requests_line", "gateway_requests", ["line"])
    op.create_index("ix_gateway_requests_version_id", "gateway_requests", ["version_id"])
    op.create_table(
        "gateway_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), sa.ForeignKey("gateway_requests.id"), nullable=False),
        sa.Column("version_id", sa.String(220), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_gateway_feedback_request_id", "gateway_feedback", ["request_id"])
    op.create_index("ix_gateway_feedback_version_id", "gateway_feedback", ["version_id"])
    op.create_table(
        "canary_checks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("line", sa.String(200), nullable=False),
        sa.Column("canary_version", sa.String(220), nullable=False),
        sa.Column("production_version", sa.String(220), nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_canary_checks_line", "canary_checks", ["line"])
    op.create_index("ix_canary_checks_canary_version", "canary_checks", ["canary_version"])


def downgrade() -> None:
    for table in ("canary_checks", "gateway_feedback", "gateway_requests", "gateway_keys"):
        op.drop_table(table)
