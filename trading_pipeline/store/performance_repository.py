"""Short-transaction operations for daily performance: what it reads (trades, orders) and its table.

Like `repository`, every function opens and commits its own transaction and returns plain frozen values,
so the performance step never holds a connection while it asks the broker for daily bars.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from trading_pipeline.domain.performance import NEW_YORK, DayPerformance, PerformanceRow, TradeFacts
from trading_pipeline.domain.types import OrderSide, TradeStatus
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import DailyPerformance, Order, Trade, utc_now

# A position exists from `open` on: pending entries never filled and cancelled ones never held anything.
HELD_STATUSES = (TradeStatus.OPEN, TradeStatus.CLOSING, TradeStatus.CLOSED)


def performance_trades(db: Database, *, until: datetime) -> list[TradeFacts]:
    """Every position opened before `until` (open, closing or closed), as the performance maths sees it.

    A `closing` trade is still open (its close is not recorded yet). A `closed` row without `closed_at`
    cannot come from the close protocol; its last update is the best available time, never "still open".
    """
    query = (
        sa.select(
            Trade.symbol,
            Trade.side,
            Trade.qty,
            Trade.entry_price,
            Trade.entry_at,
            Trade.status,
            Trade.closed_at,
            Trade.close_price,
            Trade.close_reason,
            Trade.updated_at,
        )
        .where(Trade.status.in_(HELD_STATUSES), Trade.entry_at < until)
        .order_by(Trade.entry_at, Trade.id)
    )
    with db.transaction() as session:
        rows = session.execute(query).all()
    facts = []
    for row in rows:
        closed = row.status is TradeStatus.CLOSED
        facts.append(
            TradeFacts(
                symbol=row.symbol,
                side=row.side,
                qty=row.qty,
                entry_price=row.entry_price,
                entry_at=row.entry_at,
                closed_at=(row.closed_at or row.updated_at) if closed else None,
                close_price=row.close_price if closed else None,
                close_reason=row.close_reason if closed else None,
            )
        )
    return facts


def order_sides_by_day(db: Database, *, start: datetime, end: datetime) -> dict[date, Counter[OrderSide]]:
    """Orders sent in [start, end) counted by New York day and side (the BUY:SELL balance)."""
    sent_at = sa.func.coalesce(Order.submitted_at, Order.created_at)
    query = sa.select(Order.side, Order.submitted_at, Order.created_at).where(sent_at >= start, sent_at < end)
    with db.transaction() as session:
        rows = session.execute(query).all()
    counts: dict[date, Counter[OrderSide]] = defaultdict(Counter)
    for side, submitted_at, created_at in rows:
        moment = submitted_at or created_at
        counts[moment.astimezone(NEW_YORK).date()][side] += 1
    return dict(counts)


def _values(day: DayPerformance) -> dict[str, Any]:
    return {
        "trading_date": day.trading_date,
        "realized_pnl": day.realized_pnl,
        "unrealized_pnl": day.unrealized_pnl,
        "equity": day.equity,
        "portfolio_return": day.portfolio_return,
        "spy_close": day.spy_close,
        "spy_return": day.spy_return,
        "trades_opened": day.trades_opened,
        "trades_closed": day.trades_closed,
        "wins": day.wins,
        "losses": day.losses,
        "buys": day.buys,
        "sells": day.sells,
        "closes_by_reason": dict(day.closes_by_reason),
        "computed_at": utc_now(),
    }


def save_daily_performance(db: Database, days: Sequence[DayPerformance]) -> int:
    """Insert or replace each day's row (keyed by trading_date): re-running a partition never duplicates."""
    if not days:
        return 0
    rows = [_values(day) for day in days]
    with db.transaction() as session:
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        statement = insert(DailyPerformance).values(rows)
        updates = {name: statement.excluded[name] for name in rows[0] if name != "trading_date"}
        session.execute(statement.on_conflict_do_update(index_elements=["trading_date"], set_=updates))
    return len(rows)


def daily_performance(db: Database, *, first: date | None = None, last: date | None = None) -> list[PerformanceRow]:
    """Stored rows from `first` to `last` (both included, either open-ended), oldest first."""
    query = sa.select(DailyPerformance).order_by(DailyPerformance.trading_date)
    if first is not None:
        query = query.where(DailyPerformance.trading_date >= first)
    if last is not None:
        query = query.where(DailyPerformance.trading_date <= last)
    with db.transaction() as session:
        return [_row(stored) for stored in session.scalars(query)]


def recent_daily_performance(db: Database, *, last: date, limit: int) -> list[PerformanceRow]:
    """The `limit` stored rows up to and including `last`, oldest first (what the chart plots)."""
    query = (
        sa.select(DailyPerformance)
        .where(DailyPerformance.trading_date <= last)
        .order_by(DailyPerformance.trading_date.desc())
        .limit(limit)
    )
    with db.transaction() as session:
        rows = [_row(stored) for stored in session.scalars(query)]
    return rows[::-1]


def _row(stored: DailyPerformance) -> PerformanceRow:
    return PerformanceRow(
        trading_date=stored.trading_date,
        realized_pnl=stored.realized_pnl,
        unrealized_pnl=stored.unrealized_pnl,
        equity=stored.equity,
        portfolio_return=stored.portfolio_return,
        spy_close=stored.spy_close,
        spy_return=stored.spy_return,
        trades_opened=stored.trades_opened,
        trades_closed=stored.trades_closed,
        wins=stored.wins,
        losses=stored.losses,
        buys=stored.buys,
        sells=stored.sells,
        closes_by_reason=dict(stored.closes_by_reason or {}),
    )
