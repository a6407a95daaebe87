"""Daily performance for a set of trading days: read the store, ask the broker for daily bars, compute, upsert.

read trades + orders (DB, COMMIT) → daily bars for every symbol held at a needed close, and SPY
(broker, no connection checked out) → pure maths (domain.performance) → one upsert transaction.
Each day is computed from the trades alone, so days can be (re)computed in any order: a backfill and a
re-run of a partition give the same rows, replaced in place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from trading_pipeline.broker.base import Bar, Broker
from trading_pipeline.domain.performance import (
    BENCHMARK,
    NEW_YORK,
    CloseHistory,
    DayBounds,
    DayPerformance,
    TradeFacts,
    day_performance,
)
from trading_pipeline.store import performance_repository as perf_repo
from trading_pipeline.store.database import Database

# A position whose symbol did not trade on the day is marked at its latest close within this window.
MARK_LOOKBACK = timedelta(days=10)
DEFAULT_INITIAL_CAPITAL = Decimal("100000")


@dataclass
class PerformanceRun:
    days: list[DayPerformance] = field(default_factory=list)
    symbols_priced: int = 0
    bars_received: int = 0
    rows_written: int = 0

    @property
    def missing_benchmark(self) -> list[date]:
        return [d.trading_date for d in self.days if d.spy_close is None]

    @property
    def unmarked(self) -> dict[str, list[str]]:
        return {d.trading_date.isoformat(): list(d.unmarked) for d in self.days if d.unmarked}

    @property
    def stale_marks(self) -> dict[str, dict[str, str]]:
        return {
            d.trading_date.isoformat(): {s: day.isoformat() for s, day in d.stale_marks.items()}
            for d in self.days
            if d.stale_marks
        }

    @property
    def unpriced_closes(self) -> dict[str, list[str]]:
        return {d.trading_date.isoformat(): list(d.unpriced_closes) for d in self.days if d.unpriced_closes}


def symbols_held(trades: Sequence[TradeFacts], closes: Sequence[DayBounds]) -> set[str]:
    """Symbols of positions open at any of these day closes (the ones that need a mark)."""
    return {t.symbol for t in trades if any(t.open_at(bounds.end) for bounds in closes)}


def closes_from_bars(bars: Sequence[Bar]) -> list[tuple[str, date, Decimal]]:
    """(symbol, session, close) from daily bars, which are stamped at midnight New York."""
    return [(bar.symbol, bar.timestamp.astimezone(NEW_YORK).date(), bar.close) for bar in bars]


def record_daily_performance(
    db: Database,
    broker: Broker,
    days: Sequence[date],
    *,
    previous_session: Callable[[date], date],
    initial_capital: Decimal = DEFAULT_INITIAL_CAPITAL,
    benchmark: str = BENCHMARK,
) -> PerformanceRun:
    """Compute and store the rows of `days` (trading days); `previous_session(d)` is the session before d."""
    run = PerformanceRun()
    wanted = sorted(set(days))
    if not wanted:
        return run
    bounds = {day: DayBounds.of(day) for day in wanted}
    previous = {day: DayBounds.of(previous_session(day)) for day in wanted}
    every_close = [*bounds.values(), *previous.values()]

    trades = perf_repo.performance_trades(db, until=bounds[wanted[-1]].end)  # read + commit
    sides = perf_repo.order_sides_by_day(db, start=bounds[wanted[0]].start, end=bounds[wanted[-1]].end)

    symbols = sorted(symbols_held(trades, every_close) | {benchmark})
    first_needed = min(b.day for b in every_close) - MARK_LOOKBACK
    bars = broker.daily_bars(symbols, first_needed, wanted[-1])  # no DB connection held
    history = CloseHistory(closes_from_bars(bars))
    run.bars_received = len(bars)
    run.symbols_priced = len(history.symbols)

    for day in wanted:
        before = previous[day].day
        run.days.append(
            day_performance(
                bounds[day],
                previous[day],
                trades,
                marks=history.marks_on(day),
                previous_marks=history.marks_on(before),
                initial_capital=initial_capital,
                spy_close=history.close_on(benchmark, day),
                spy_previous_close=history.close_on(benchmark, before),
                order_sides=sides.get(day),
            )
        )
    run.rows_written = perf_repo.save_daily_performance(db, run.days)
    return run
