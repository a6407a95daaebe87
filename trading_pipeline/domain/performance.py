"""Daily performance: realized and unrealized P&L, equity, return vs the benchmark, win rate, activity.

Pure and exact: money is Decimal throughout, quantized to the store's 8 decimal places only at the end.
A day is the New York calendar day; its close is New York midnight, so "open at the day's close" means
opened before midnight and not closed before it. Every value of a day is computed from the trades alone
(not from the previous day's stored row), so a partition can be computed, recomputed or backfilled in
any order and always gives the same answer.

Equity is `initial_capital + realized P&L to date + unrealized P&L at the close`; the portfolio's daily
return is the day's change in that equity over the previous session's equity, the benchmark's is its
close-to-close change. A position whose symbol has no close on the day is marked at its latest earlier
close (reported as stale); one with no close at all is left out of the unrealized P&L and reported as
unmarked — a number is never invented.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from trading_pipeline.domain.types import ExitReason, OrderSide, PositionSide

NEW_YORK = ZoneInfo("America/New_York")
BENCHMARK = "SPY"
PLACES = Decimal("0.00000001")  # NUMERIC(20, 8): what the store keeps
ZERO = Decimal(0)
HUNDRED = Decimal(100)


def quantize(value: Decimal) -> Decimal:
    return value.quantize(PLACES)


@dataclass(frozen=True, slots=True)
class DayBounds:
    """One New York calendar day as a half-open UTC interval [start, end)."""

    day: date
    start: datetime
    end: datetime

    @classmethod
    def of(cls, day: date) -> DayBounds:
        start = datetime.combine(day, time(0), NEW_YORK).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), NEW_YORK).astimezone(UTC)
        return cls(day, start, end)

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True, slots=True)
class TradeFacts:
    """What performance needs to know about one position's lifetime (open, or closed at a known price)."""

    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    entry_at: datetime
    closed_at: datetime | None = None
    close_price: Decimal | None = None
    close_reason: ExitReason | None = None

    def open_at(self, moment: datetime) -> bool:
        return self.entry_at < moment and (self.closed_at is None or self.closed_at >= moment)

    def closed_before(self, moment: datetime) -> bool:
        return self.closed_at is not None and self.closed_at < moment


def position_pnl(side: PositionSide, qty: Decimal, entry: Decimal, exit_price: Decimal) -> Decimal:
    """(exit − entry) × qty for a long; (entry − exit) × qty for a short."""
    move = exit_price - entry
    return move * qty if side is PositionSide.LONG else -move * qty


def realized_pnl(trade: TradeFacts) -> Decimal | None:
    """P&L of a closed trade; None while it is open or when its exit price is unknown."""
    if trade.closed_at is None or trade.close_price is None:
        return None
    return position_pnl(trade.side, trade.qty, trade.entry_price, trade.close_price)


@dataclass(frozen=True, slots=True)
class Mark:
    """The close a position is marked at, and the session it is from (earlier than the day → stale)."""

    price: Decimal
    day: date


class CloseHistory:
    """Daily closes per symbol, to mark positions at any day's close (its own, or the latest before it)."""

    def __init__(self, closes: Iterable[tuple[str, date, Decimal]]) -> None:
        by_symbol: dict[str, dict[date, Decimal]] = {}
        for symbol, session, close in closes:
            if close.is_finite() and close > 0:  # a zero or NaN close is no price
                by_symbol.setdefault(symbol, {})[session] = close
        self._days = {symbol: sorted(prices) for symbol, prices in by_symbol.items()}
        self._prices = by_symbol

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self._days)

    def mark(self, symbol: str, day: date) -> Mark | None:
        days = self._days.get(symbol)
        if not days:
            return None
        i = bisect.bisect_right(days, day)
        if i == 0:
            return None
        session = days[i - 1]
        return Mark(self._prices[symbol][session], session)

    def close_on(self, symbol: str, day: date) -> Decimal | None:
        """The close of exactly that session (a benchmark return must not use a stale close)."""
        return self._prices.get(symbol, {}).get(day)

    def marks_on(self, day: date) -> dict[str, Mark]:
        marks = {symbol: self.mark(symbol, day) for symbol in self._days}
        return {symbol: mark for symbol, mark in marks.items() if mark is not None}


def marks_on(closes: Iterable[tuple[str, date, Decimal]], day: date) -> dict[str, Mark]:
    """Each symbol's latest close on or before `day`, from (symbol, session, close) triples."""
    return CloseHistory(closes).marks_on(day)


@dataclass(frozen=True, slots=True)
class BookValue:
    """The book at one day's close."""

    day: date
    realized_to_date: Decimal
    unrealized: Decimal
    open_positions: int
    unmarked: tuple[str, ...] = ()  # open positions whose symbol has no close at all
    stale_marks: Mapping[str, date] = field(default_factory=dict)  # symbol → session of the close used
    unpriced_closes: tuple[str, ...] = ()  # closed trades without an exit price (not in realized P&L)

    def equity(self, initial_capital: Decimal) -> Decimal:
        return initial_capital + self.realized_to_date + self.unrealized


def value_book(trades: Iterable[TradeFacts], bounds: DayBounds, marks: Mapping[str, Mark]) -> BookValue:
    """Realized P&L of every trade closed before the day's end, and open positions marked at its close."""
    realized = ZERO
    unrealized = ZERO
    open_positions = 0
    unmarked: list[str] = []
    stale: dict[str, date] = {}
    unpriced: list[str] = []
    for trade in trades:
        if trade.closed_before(bounds.end):
            pnl = realized_pnl(trade)
            if pnl is None:
                unpriced.append(trade.symbol)
            else:
                realized += pnl
        elif trade.open_at(bounds.end):
            open_positions += 1
            mark = marks.get(trade.symbol)
            if mark is None:
                unmarked.append(trade.symbol)
                continue
            if mark.day < bounds.day:
                stale[trade.symbol] = mark.day
            unrealized += position_pnl(trade.side, trade.qty, trade.entry_price, mark.price)
    return BookValue(
        day=bounds.day,
        realized_to_date=realized,
        unrealized=unrealized,
        open_positions=open_positions,
        unmarked=tuple(sorted(set(unmarked))),
        stale_marks=dict(sorted(stale.items())),
        unpriced_closes=tuple(sorted(set(unpriced))),
    )


def pct_change(new: Decimal | None, old: Decimal | None) -> Decimal | None:
    """new / old − 1, or None when either is unknown or old is not positive."""
    if new is None or old is None or old <= 0:
        return None
    return quantize(new / old - 1)


@dataclass(frozen=True, slots=True)
class PerformanceRow:
    """One trading day as stored in `daily_performance` (what the table, the chart and the report show)."""

    trading_date: date
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    equity: Decimal | None
    portfolio_return: Decimal | None
    spy_close: Decimal | None
    spy_return: Decimal | None
    trades_opened: int
    trades_closed: int
    wins: int
    losses: int
    buys: int
    sells: int
    closes_by_reason: Mapping[str, int]

    @property
    def win_rate(self) -> Decimal | None:
        return win_rate(self.wins, self.trades_closed)

    @property
    def excess_return(self) -> Decimal | None:
        if self.portfolio_return is None or self.spy_return is None:
            return None
        return self.portfolio_return - self.spy_return

    @property
    def buy_sell(self) -> str:
        return f"{self.buys}:{self.sells}"


@dataclass(frozen=True, slots=True)
class DayPerformance:
    """One trading day's row of the `daily_performance` table, plus what was flagged while computing it."""

    trading_date: date
    realized_pnl: Decimal  # trades closed that day
    unrealized_pnl: Decimal  # open at the close, marked at the close
    equity: Decimal
    previous_equity: Decimal
    portfolio_return: Decimal | None
    spy_close: Decimal | None
    spy_return: Decimal | None
    trades_opened: int
    trades_closed: int
    wins: int
    losses: int
    buys: int
    sells: int
    closes_by_reason: Mapping[str, int]
    open_positions: int
    unmarked: tuple[str, ...] = ()
    stale_marks: Mapping[str, date] = field(default_factory=dict)
    unpriced_closes: tuple[str, ...] = ()

    @property
    def day_pnl(self) -> Decimal:
        """Change in equity since the previous session's close (realized + change in unrealized)."""
        return self.equity - self.previous_equity

    @property
    def win_rate(self) -> Decimal | None:
        return win_rate(self.wins, self.trades_closed)

    @property
    def flagged(self) -> bool:
        """Something could not be valued exactly: an unmarked position or a close without an exit price."""
        return bool(self.unmarked or self.unpriced_closes)

    def row(self) -> PerformanceRow:
        return PerformanceRow(
            trading_date=self.trading_date,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=self.unrealized_pnl,
            equity=self.equity,
            portfolio_return=self.portfolio_return,
            spy_close=self.spy_close,
            spy_return=self.spy_return,
            trades_opened=self.trades_opened,
            trades_closed=self.trades_closed,
            wins=self.wins,
            losses=self.losses,
            buys=self.buys,
            sells=self.sells,
            closes_by_reason=dict(self.closes_by_reason),
        )


def win_rate(wins: int, closed: int) -> Decimal | None:
    """Share of the day's closed trades with a positive P&L; None when nothing closed."""
    if closed <= 0:
        return None
    return quantize(Decimal(wins) / Decimal(closed))


def day_performance(
    bounds: DayBounds,
    previous: DayBounds,
    trades: Sequence[TradeFacts],
    *,
    marks: Mapping[str, Mark],
    previous_marks: Mapping[str, Mark],
    initial_capital: Decimal,
    spy_close: Decimal | None,
    spy_previous_close: Decimal | None,
    order_sides: Mapping[OrderSide, int] | None = None,
) -> DayPerformance:
    """The day's row. `previous` is the previous session; `order_sides` counts the day's orders by side."""
    if previous.day >= bounds.day:
        raise ValueError(f"previous session {previous.day} must be before {bounds.day}")
    if initial_capital <= 0:
        raise ValueError(f"initial capital must be above 0, got {initial_capital}")
    book = value_book(trades, bounds, marks)
    before = value_book(trades, previous, previous_marks)
    closed_today = [t for t in trades if t.closed_at is not None and bounds.contains(t.closed_at)]
    pnls = [p for p in (realized_pnl(t) for t in closed_today) if p is not None]
    reasons = Counter((t.close_reason.value if t.close_reason else "unknown") for t in closed_today)
    sides = order_sides or {}
    equity = book.equity(initial_capital)
    previous_equity = before.equity(initial_capital)
    return DayPerformance(
        trading_date=bounds.day,
        realized_pnl=quantize(sum(pnls, ZERO)),
        unrealized_pnl=quantize(book.unrealized),
        equity=quantize(equity),
        previous_equity=quantize(previous_equity),
        portfolio_return=pct_change(equity, previous_equity),
        spy_close=spy_close,
        spy_return=pct_change(spy_close, spy_previous_close),
        trades_opened=sum(1 for t in trades if bounds.contains(t.entry_at)),
        trades_closed=len(closed_today),
        wins=sum(1 for p in pnls if p > 0),
        losses=sum(1 for p in pnls if p < 0),
        buys=int(sides.get(OrderSide.BUY, 0)),
        sells=int(sides.get(OrderSide.SELL, 0)),
        closes_by_reason=dict(sorted(reasons.items())),
        open_positions=book.open_positions,
        unmarked=book.unmarked,
        stale_marks=book.stale_marks,
        unpriced_closes=book.unpriced_closes,
    )


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """Growth of 100 invested at the start of the range, for the portfolio and for the benchmark."""

    day: date
    portfolio: Decimal
    benchmark: Decimal | None


def growth_curve(days: Sequence[tuple[date, Decimal | None, Decimal | None]]) -> list[CurvePoint]:
    """Compound daily (portfolio, benchmark) returns into two indices starting at 100.

    A day without a portfolio return leaves the index unchanged (nothing is invented); the benchmark
    index is None until its first known return and then carries forward over gaps.
    """
    portfolio = HUNDRED
    benchmark: Decimal | None = None
    points: list[CurvePoint] = []
    for day, portfolio_return, benchmark_return in sorted(days, key=lambda item: item[0]):
        if portfolio_return is not None:
            portfolio *= 1 + portfolio_return
        if benchmark_return is not None:
            benchmark = (benchmark if benchmark is not None else HUNDRED) * (1 + benchmark_return)
        points.append(CurvePoint(day, quantize(portfolio), None if benchmark is None else quantize(benchmark)))
    return points


def as_percent(ratio: Decimal | None, places: int = 2) -> str:
    """0.01234 → '1.23%'; None → 'n/a' (for tables)."""
    if ratio is None:
        return "n/a"
    shown = (ratio * HUNDRED).quantize(Decimal(1).scaleb(-places))
    return f"{shown if shown else abs(shown):f}%"  # never "-0.00%"
