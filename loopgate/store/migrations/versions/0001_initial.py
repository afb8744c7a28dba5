"""Initial registry schema.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    # one helper per table, in the order (and with the DDL) this migration has always run
    _create_lines()
    _create_artifacts()
    _create_versions()
    _create_version_files()
    _create_evaluations()
    _create_decisions()
    _create_channels()
    _create_channel_moves()
    _create_approvals()
    _create_steps()
    _create_ledger()


def _create_lines() -> None:
    op.create_table(
        "lines",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("parent", sa.String(200), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )


def _create_artifacts() -> None:
    op.create_table(
        "artifacts",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )


def _create_versions() -> None:
    op.create_table(
        "versions",
        sa.Column("id", sa.String(220), primary_key=True),
        sa.Column("line", sa.String(200), sa.ForeignKey("lines.name"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("parent_version", sa.String(220), nullable=True),
        sa.Column("base_version", sa.String(220), nullable=True),
        sa.Column("recipe", sa.JSON, nullable=True),
        sa.Column("data_sha256", sa.JSON, nullable=False),
        sa.Column("seed", sa.Integer, nullable=True),
        sa.Column("provenance", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("line", "number", name="uq_versions_line_number"),
    )


def _create_version_files() -> None:
    op.create_table(
        "version_files",
        sa.Column("version_id", sa.String(220), sa.ForeignKey("versions.id"), primary_key=True),
        sa.Column("path", sa.String(500), primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("artifacts.sha256"), nullable=False),
    )


def _create_evaluations() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.String(220), sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("suite_sha256", sa.String(64), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("version_id", "suite_sha256", name="uq_evaluations_version_suite"),
    )


def _create_decisions() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.String(220), sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("policy_sha256", sa.String(64), nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )


def _create_channels() -> None:
    op.create_table(
        "channels",
        sa.Column("line", sa.String(200), sa.ForeignKey("lines.name"), primary_key=True),
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("version_id", sa.String(220), sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )


def _create_channel_moves() -> None:
    op.create_table(
        "channel_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("line", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("from_version", sa.String(220), nullable=True),
        sa.Column("to_version", sa.String(220), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("decision_id", sa.Integer, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )


def _create_approvals() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.String(220), sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("approver", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("overrides", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )


def _create_steps() -> None:
    op.create_table(
        "steps",
        sa.Column("key", sa.String(500), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
    )


def _create_ledger() -> None:
    op.create_table(
        "ledger",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for table in ["ledger", "steps", "approvals", "channel_moves", "channels", "decisions", "evaluations",
                  "version_files", "versions", "artifacts", "lines"]:
        op.drop_table(table)
