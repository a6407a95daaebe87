"""position adjustments (the audit of following the broker's book) and trades.status_reason

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import trading_pipeline.store.column_types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "position_adjustments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("trade_id", sa.Uuid(), nullable=True),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("before", trading_pipeline.store.column_types.SafeJSON(), nullable=False),
        sa.Column("after", trading_pipeline.store.column_types.SafeJSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("dagster_run_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", trading_pipeline.store.column_types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["trade_id"], ["trades.id"], name=op.f("fk_position_adjustments_trade_id_trades")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_position_adjustments")),
    )
    with op.batch_alter_table("position_adjustments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_position_adjustments_symbol"), ["symbol"], unique=False)
        batch_op.create_index(batch_op.f("ix_position_adjustments_trade_id"), ["trade_id"], unique=False)
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.drop_column("status_reason")
    with op.batch_alter_table("position_adjustments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_position_adjustments_trade_id"))
        batch_op.drop_index(batch_op.f("ix_position_adjustments_symbol"))
    op.drop_table("position_adjustments")
