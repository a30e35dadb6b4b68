"""Forced requests and the caller's request id in the prediction log: `forced` marks rows whose
variant an admin chose (kept out of gate and experiment evidence); `client_request_id` keeps
the id the caller sent, now that `request_id` is always the gateway's own.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("client_request_id", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("client_request_id")
        batch.drop_column("forced")
