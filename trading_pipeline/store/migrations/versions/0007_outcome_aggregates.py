"""outcome aggregates: per-day counters and the day's stop crosses, folded in by each stop-loss run

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import trading_pipeline.store.column_types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outcome_days",
        sa.Column("trading_day", sa.Date(), nullable=False),
        sa.Column("runs_applied", sa.Integer(), nullable=False),
        sa.Column("last_run_id", sa.String(length=64), nullable=True),
        sa.Column("crosses_closed_in_time", sa.Integer(), nullable=False),
        sa.Column("updated_at", trading_pipeline.store.column_types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("trading_day", name=op.f("pk_outcome_days")),
    )
    op.create_table(
        "outcome_crosses",
        sa.Column("trading_day", sa.Date(), nullable=False),
        sa.Column("trade_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("entry_at", trading_pipeline.store.column_types.UtcDateTime(), nullable=False),
        sa.Column("run_index", sa.Integer(), nullable=False),
        sa.Column("crossed_at", trading_pipeline.store.column_types.UtcDateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("updated_at", trading_pipeline.store.column_types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("trading_day", "trade_id", name=op.f("pk_outcome_crosses")),
    )
    with op.batch_alter_table("outcome_crosses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outcome_crosses_trading_day_state"), ["trading_day", "state"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("outcome_crosses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outcome_crosses_trading_day_state"))
    op.drop_table("outcome_crosses")
    op.drop_table("outcome_days")
