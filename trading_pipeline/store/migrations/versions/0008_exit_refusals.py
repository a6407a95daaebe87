"""exit_refusals: exits refused for a lasting reason, and when they may be sent again

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 23:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import trading_pipeline.store.column_types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exit_refusals",
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("trade_id", sa.Uuid(), nullable=True),
        sa.Column("first_refused_at", trading_pipeline.store.column_types.UtcDateTime(), nullable=False),
        sa.Column("last_refused_at", trading_pipeline.store.column_types.UtcDateTime(), nullable=False),
        sa.Column("retry_after", trading_pipeline.store.column_types.UtcDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("cause", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("dagster_run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_exit_refusals")),
    )


def downgrade() -> None:
    op.drop_table("exit_refusals")
