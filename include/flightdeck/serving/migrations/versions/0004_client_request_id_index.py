"""An index on the prediction log's `client_request_id`: finding what the gateway answered for the
id a caller sent (and the rows an outcome keyed by that id labels) reads the index, not the table.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_predictions_client_request_id", "predictions", ["client_request_id"])


def downgrade() -> None:
    op.drop_index("ix_predictions_client_request_id", table_name="predictions")
