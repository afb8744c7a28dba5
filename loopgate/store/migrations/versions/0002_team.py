"""Team scale: the ledger's anchor in the database, signed entries (#12).

The head row starts at the ledger's last entry; a ``ledger.head`` file left by an older Loopgate is
adopted by ``Store`` when it opens (the migration does not know the store's folder).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    head = op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(64), nullable=True),
    )
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("signature", sa.String(64), nullable=True))
    last = op.get_bind().execute(sa.text("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")).first()
    op.bulk_insert(head, [{"id": 1, "seq": last[0] if last else 0, "hash": last[1] if last else GENESIS,
                           "signature": None}])


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("signature")
    op.drop_table("ledger_head")
