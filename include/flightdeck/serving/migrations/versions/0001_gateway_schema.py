"""Gateway schema: route tables, running sums per worker, prediction log, outcomes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types in flightdeck.serving.db: a migration must not change when
# the models do.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
Double = sa.Float(53)


def upgrade() -> None:
    op.create_table(
        "route_tables",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_table(
        "variant_stats",
        sa.Column("endpoint", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, primary_key=True),
        sa.Column("variant", sa.Text, primary_key=True),
        sa.Column("model_version", sa.Text, primary_key=True),
        sa.Column("route_version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("worker_id", sa.Text, primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("latency_sum", Double, nullable=False),
        sa.Column("latency_sumsq", Double, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("score_sum", Double, nullable=False),
        sa.Column("score_sumsq", Double, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Text, nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("unit_id", sa.Text, nullable=True),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("variant", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("route_version", sa.Integer, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("input_hash", sa.Text, nullable=False),
        sa.Column("score", Double, nullable=False),
        sa.Column("latency_ms", Double, nullable=False),
        sa.Column("fallback", sa.Boolean, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])
    op.create_index("ix_predictions_unit_id", "predictions", ["unit_id"])
    op.create_index("ix_predictions_endpoint_created_at", "predictions", ["endpoint", "created_at"])
    op.create_table(
        "outcomes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Text, nullable=True),
        sa.Column("unit_id", sa.Text, nullable=True),
        sa.Column("label", Double, nullable=False),
        sa.Column("observed_at", Timestamp, nullable=False),
        sa.Column("recorded_at", Timestamp, nullable=False),
        sa.CheckConstraint("request_id IS NOT NULL OR unit_id IS NOT NULL", name="ck_outcomes_has_id"),
    )
    op.create_index("ix_outcomes_request_id", "outcomes", ["request_id"])
    op.create_index("ix_outcomes_unit_id", "outcomes", ["unit_id"])


def downgrade() -> None:
    for index, table in (("ix_outcomes_unit_id", "outcomes"), ("ix_outcomes_request_id", "outcomes"),
                         ("ix_predictions_endpoint_created_at", "predictions"),
                         ("ix_predictions_unit_id", "predictions"),
                         ("ix_predictions_request_id", "predictions")):
        op.drop_index(index, table_name=table)
    for table in ("outcomes", "predictions", "variant_stats", "route_tables"):
        op.drop_table(table)
