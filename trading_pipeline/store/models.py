"""SQLAlchemy 2 typed ORM models of the trading store.

Enums are stored by name in plain VARCHAR columns (no native PostgreSQL enum types, so migrations stay
simple). Money is `Money` (exact), times are `UtcDateTime` (aware UTC), JSON goes through to_jsonable.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from trading_pipeline.domain.types import ExitReason, OrderSide, PositionSide, TradeStatus
from trading_pipeline.store.column_types import Money, SafeJSON, UtcDateTime


def utc_now() -> datetime:
    return datetime.now(UTC)


def _enum(kind: type) -> sa.Enum:
    return sa.Enum(kind, native_enum=False, length=24, validate_strings=True, create_constraint=False)


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class DecisionRun(Base):
    """One execution of a decision step (entries, closes); its metadata is JSON-safe by construction."""

    __tablename__ = "decision_runs"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(sa.String(32))
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    strategy: Mapped[str | None] = mapped_column(sa.String(64))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    execution_meta: Mapped[Any] = mapped_column(SafeJSON, default=dict)


class Trade(Base):
    """One row per position lifetime: opened → (closing) → closed."""

    __tablename__ = "trades"
    __table_args__ = (
        sa.CheckConstraint("qty > 0", name="qty_positive"),
        sa.Index("ix_trades_status_symbol", "status", "symbol"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    symbol: Mapped[str] = mapped_column(sa.String(16))
    side: Mapped[PositionSide] = mapped_column(_enum(PositionSide))
    qty: Mapped[Decimal] = mapped_column(Money)
    entry_price: Mapped[Decimal] = mapped_column(Money)
    entry_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stop_loss: Mapped[Decimal | None] = mapped_column(Money)
    take_profit: Mapped[Decimal | None] = mapped_column(Money)
    trailing_pct: Mapped[Decimal | None] = mapped_column(Money)
    high_water_mark: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[TradeStatus] = mapped_column(_enum(TradeStatus), default=TradeStatus.OPEN)
    strategy: Mapped[str | None] = mapped_column(sa.String(64))
    open_client_order_id: Mapped[str | None] = mapped_column(sa.String(48), unique=True)
    decision_run_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("decision_runs.id"))
    close_reason: Mapped[ExitReason | None] = mapped_column(_enum(ExitReason))
    close_trigger_price: Mapped[Decimal | None] = mapped_column(Money)
    close_price: Mapped[Decimal | None] = mapped_column(Money)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    close_client_order_id: Mapped[str | None] = mapped_column(sa.String(48), unique=True)
    close_attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    # Second line of defence: protective stop/take-profit orders live at the broker (bracket or OCO).
    protected: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    protection_client_order_id: Mapped[str | None] = mapped_column(sa.String(48))
    closing_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closing_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    # Why the trade is in its status when the broker decided it (an entry rejected / expired / cancelled).
    status_reason: Mapped[str | None] = mapped_column(sa.Text)
    # The strategy's own limit for this position (the sweep closes it after that many sessions, or sooner
    # when the configured max_age_trading_days is smaller).
    max_age_trading_days: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, onupdate=utc_now)


class PositionAdjustment(Base):
    """Audit of every change the pipeline made to a trade to follow the broker's book rather than its own
    intent: quantity drift repaired, a position closed outside the pipeline, a partial fill split off."""

    __tablename__ = "position_adjustments"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    trade_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("trades.id"), index=True)
    symbol: Mapped[str] = mapped_column(sa.String(16), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    before: Mapped[Any] = mapped_column(SafeJSON, default=dict)
    after: Mapped[Any] = mapped_column(SafeJSON, default=dict)
    reason: Mapped[str] = mapped_column(sa.Text)
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class Order(Base):
    """Every order sent to the broker; client_order_id is unique, the same id the broker holds."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(sa.String(48), unique=True)
    broker_order_id: Mapped[str | None] = mapped_column(sa.String(64))
    trade_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("trades.id"), index=True)
    symbol: Mapped[str] = mapped_column(sa.String(16))
    side: Mapped[OrderSide] = mapped_column(_enum(OrderSide))
    qty: Mapped[Decimal] = mapped_column(Money)
    order_type: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(32))
    filled_qty: Mapped[Decimal | None] = mapped_column(Money)
    filled_avg_price: Mapped[Decimal | None] = mapped_column(Money)
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    filled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    raw: Mapped[Any] = mapped_column(SafeJSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, onupdate=utc_now)


class UniverseSnapshot(Base):
    """The day's sample: the seed that produced it and the symbols, so a run can be replayed."""

    __tablename__ = "universe_snapshots"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    trading_date: Mapped[date] = mapped_column(sa.Date, unique=True)
    seed: Mapped[int] = mapped_column(sa.BigInteger)
    universe_size: Mapped[int] = mapped_column(sa.Integer)
    symbols: Mapped[Any] = mapped_column(SafeJSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class QuoteRecord(Base):
    """A quote as fetched and used by a run (the replay of the day's crosses reads these)."""

    __tablename__ = "quotes"
    __table_args__ = (sa.Index("ix_quotes_symbol_quoted_at", "symbol", "quoted_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    symbol: Mapped[str] = mapped_column(sa.String(16))
    bid: Mapped[Decimal] = mapped_column(Money)
    ask: Mapped[Decimal] = mapped_column(Money)
    quoted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)


class DailyPerformance(Base):
    """One row per trading day (the `performance` partition): P&L, win rate, activity, vs SPY."""

    __tablename__ = "daily_performance"

    trading_date: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    realized_pnl: Mapped[Decimal] = mapped_column(Money)
    unrealized_pnl: Mapped[Decimal] = mapped_column(Money)
    equity: Mapped[Decimal | None] = mapped_column(Money)
    portfolio_return: Mapped[Decimal | None] = mapped_column(Money)
    spy_close: Mapped[Decimal | None] = mapped_column(Money)
    spy_return: Mapped[Decimal | None] = mapped_column(Money)
    trades_opened: Mapped[int] = mapped_column(sa.Integer, default=0)
    trades_closed: Mapped[int] = mapped_column(sa.Integer, default=0)
    wins: Mapped[int] = mapped_column(sa.Integer, default=0)
    losses: Mapped[int] = mapped_column(sa.Integer, default=0)
    buys: Mapped[int] = mapped_column(sa.Integer, default=0)
    sells: Mapped[int] = mapped_column(sa.Integer, default=0)
    closes_by_reason: Mapped[Any] = mapped_column(SafeJSON, default=dict)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class AlertRecord(Base):
    """An alert condition, keyed so repeats are de-duplicated and a recovery can be announced."""

    __tablename__ = "alerts"
    __table_args__ = (sa.Index("ix_alerts_key_state", "key", "state"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(sa.String(200))
    severity: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(16))  # firing | resolved
    title: Mapped[str] = mapped_column(sa.String(300))
    message: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[Any] = mapped_column(SafeJSON, default=dict)
    source: Mapped[str] = mapped_column(sa.String(64))
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    last_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    occurrences: Mapped[int] = mapped_column(sa.Integer, default=1)
    deliveries: Mapped[Any] = mapped_column(SafeJSON, default=dict)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class TradingStateChange(Base):
    """Kill-switch history: every halt and resume, with who and why. The latest row is the state."""

    __tablename__ = "trading_state_changes"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    halted: Mapped[bool] = mapped_column(sa.Boolean)
    actor: Mapped[str] = mapped_column(sa.String(120))
    reason: Mapped[str] = mapped_column(sa.Text)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class OutcomeDay(Base):
    """The day's outcome aggregates, folded in by each stop-loss run from its own data, so the outcome checks
    read one row and the open crosses instead of replaying every earlier run of the day."""

    __tablename__ = "outcome_days"

    trading_day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    runs_applied: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_run_id: Mapped[str | None] = mapped_column(sa.String(64))
    crosses_closed_in_time: Mapped[int] = mapped_column(sa.Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, onupdate=utc_now)


class OutcomeCross(Base):
    """A trade's first stop cross of the day, as seen in one stop-loss run's own quotes, and how it ended."""

    __tablename__ = "outcome_crosses"
    __table_args__ = (sa.Index("ix_outcome_crosses_trading_day_state", "trading_day", "state"),)

    trading_day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    trade_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    symbol: Mapped[str] = mapped_column(sa.String(16))
    entry_at: Mapped[datetime] = mapped_column(UtcDateTime)
    run_index: Mapped[int] = mapped_column(sa.Integer)
    crossed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(sa.String(16))  # CrossState by name
    note: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, onupdate=utc_now)


class ExitRefusal(Base):
    """An exit the broker refused for a reason that lasts (pattern-day-trading protection, an asset not
    tradable, an account blocked): when it may be sent again, so the stop-trigger sensor does not re-send the
    same refused order every tick. One row per symbol; removed once the position is flat or the exit accepted."""

    __tablename__ = "exit_refusals"

    symbol: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    trade_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    first_refused_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_refused_at: Mapped[datetime] = mapped_column(UtcDateTime)
    retry_after: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=1)
    status: Mapped[int | None] = mapped_column(sa.Integer)
    code: Mapped[int | None] = mapped_column(sa.Integer)
    cause: Mapped[str] = mapped_column(sa.String(200))
    message: Mapped[str] = mapped_column(sa.Text)
    dagster_run_id: Mapped[str | None] = mapped_column(sa.String(64))
