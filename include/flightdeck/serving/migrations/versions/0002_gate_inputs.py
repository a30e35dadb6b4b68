"""What the release gates and the backtest read: score bins and shadow disagreements in the
running sums, and each live row's input in the prediction log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCORE_BIN_COLUMNS = tuple(f"score_bin_{i}" for i in range(10))  # frozen copy, as in 0001


def upgrade() -> None:
    with op.batch_alter_table("variant_stats") as batch:
        for name in (*SCORE_BIN_COLUMNS, "disagreements"):
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("features", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("features")
    with op.batch_alter_table("variant_stats") as batch:
        for name in (*SCORE_BIN_COLUMNS, "disagreements"):
            batch.drop_column(name)
