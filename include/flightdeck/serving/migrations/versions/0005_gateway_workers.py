"""The gateway's workers and the route version each one serves: a route change can wait until
every live worker has switched (PUT /admin/routes with `wait`).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)  # as in 0001


def upgrade() -> None:
    op.create_table(
        "gateway_workers",
        sa.Column("worker_id", sa.Text, primary_key=True),
        sa.Column("route_version", sa.Integer, nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("heartbeat_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_workers")
