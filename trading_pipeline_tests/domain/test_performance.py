"""Pure performance maths: P&L by side, marking at a day's close, equity and returns, win rate, the curve."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_pipeline.domain.performance import (
    CloseHistory,
    DayBounds,
    Mark,
    TradeFacts,
    as_percent,
    day_performance,
    growth_curve,
    pct_change,
    position_pnl,
    realized_pnl,
    value_book,
    win_rate,
)
from trading_pipeline.domain.types import ExitReason, OrderSide, PositionSide

D = Decimal
FRI = date(2026, 11, 20)
THU = date(2026, 11, 19)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A New York wall-clock time in November (UTC−5), as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) + timedelta(hours=5)


def trade(symbol: str = "AAA", side: PositionSide = PositionSide.LONG, qty: str = "10", entry: str = "50", **kw):
    kw.setdefault("entry_at", at(THU, 10))
    return TradeFacts(symbol=symbol, side=side, qty=D(qty), entry_price=D(entry), **kw)


def test_pnl_sign_follows_the_side() -> None:
    assert position_pnl(PositionSide.LONG, D(10), D(50), D(55)) == D(50)
    assert position_pnl(PositionSide.LONG, D(10), D(50), D(45)) == D(-50)
    assert position_pnl(PositionSide.SHORT, D(5), D(20), D(22)) == D(-10)
    assert position_pnl(PositionSide.SHORT, D(5), D(20), D("18.5")) == D("7.5")


def test_realized_pnl_needs_an_exit_price() -> None:
    assert realized_pnl(trade()) is None
    assert realized_pnl(trade(closed_at=at(FRI, 11))) is None  # closed, price unknown: never a 0
    assert realized_pnl(trade(closed_at=at(FRI, 11), close_price=D("50.10"))) == D("1.00")


def test_day_bounds_are_the_new_york_calendar_day_across_dst() -> None:
    nov = DayBounds.of(FRI)
    assert nov.start == datetime(2026, 11, 20, 5, tzinfo=UTC) and nov.end == datetime(2026, 11, 21, 5, tzinfo=UTC)
    spring = DayBounds.of(date(2026, 3, 8))  # clocks go forward: a 23-hour day
    assert spring.end - spring.start == timedelta(hours=23)
    assert nov.contains(nov.start) and not nov.contains(nov.end)


def test_marks_use_the_latest_close_on_or_before_the_day() -> None:
    history = CloseHistory(
        [
            ("AAA", THU, D("51")),
            ("AAA", FRI, D("52")),
            ("BBB", THU, D("9")),
            ("CCC", FRI, D("0")),  # a zero close is no price
            ("DDD", date(2026, 11, 23), D("7")),  # after the day: not visible
        ]
    )
    marks = history.marks_on(FRI)
    assert marks == {"AAA": Mark(D("52"), FRI), "BBB": Mark(D("9"), THU)}
    assert history.close_on("BBB", FRI) is None and history.close_on("AAA", THU) == D("51")


def test_value_book_marks_open_positions_and_flags_what_it_cannot_price() -> None:
    trades = [
        trade("AAA", qty="10", entry="50"),  # open, marked today
        trade("BBB", PositionSide.SHORT, qty="4", entry="10"),  # open, stale mark (Thursday's close)
        trade("ZZZ", qty="1", entry="5"),  # open, no close at all
        trade("CCC", entry="20", qty="2", closed_at=at(THU, 15), close_price=D("21")),  # closed earlier: +2
        trade("DDD", closed_at=at(FRI, 12)),  # closed without a price: flagged, not counted
        trade("EEE", entry_at=at(date(2026, 11, 23), 10)),  # opened after the day: not in the book
    ]
    marks = {"AAA": Mark(D("52"), FRI), "BBB": Mark(D("9"), THU)}
    book = value_book(trades, DayBounds.of(FRI), marks)
    assert book.realized_to_date == D(2)
    assert book.unrealized == D(20) + D(4)  # long +2×10, short +1×4
    assert book.open_positions == 3
    assert book.unmarked == ("ZZZ",) and book.stale_marks == {"BBB": THU} and book.unpriced_closes == ("DDD",)
    assert book.equity(D(1000)) == D(1026)


def test_a_trade_closed_at_exactly_midnight_belongs_to_the_next_day() -> None:
    midnight = DayBounds.of(FRI).end
    closing = trade(closed_at=midnight, close_price=D(60))
    book = value_book([closing], DayBounds.of(FRI), {"AAA": Mark(D(55), FRI)})
    assert book.open_positions == 1 and book.unrealized == D(50) and book.realized_to_date == 0


def test_day_performance_counts_and_returns() -> None:
    trades = [
        trade(
            "AAA",
            entry_at=at(date(2026, 11, 18), 10),
            closed_at=at(FRI, 11),
            close_price=D(55),
            close_reason=ExitReason.TAKE_PROFIT,
        ),  # +50
        trade(
            "BBB",
            PositionSide.SHORT,
            qty="5",
            entry="20",
            closed_at=at(FRI, 14),
            close_price=D(22),
            close_reason=ExitReason.STOP_LOSS,
        ),  # −10
        trade("CCC", qty="3", entry="10", entry_at=at(FRI, 10)),  # opened today, open at the close
        trade(
            "DDD",
            qty="1",
            entry="10",
            entry_at=at(FRI, 10),
            closed_at=at(FRI, 15),
            close_price=D(10),
            close_reason=ExitReason.MAX_AGE,
        ),  # scratch: neither win nor loss
    ]
    marks_thu = {"AAA": Mark(D(53), THU), "BBB": Mark(D(21), THU)}
    marks_fri = {"CCC": Mark(D(12), FRI)}
    result = day_performance(
        DayBounds.of(FRI),
        DayBounds.of(THU),
        trades,
        marks=marks_fri,
        previous_marks=marks_thu,
        initial_capital=D(10000),
        spy_close=D(505),
        spy_previous_close=D(500),
        order_sides={OrderSide.BUY: 2, OrderSide.SELL: 3},
    )
    assert result.realized_pnl == D(40)
    assert result.unrealized_pnl == D(6)
    # Thursday: AAA +30, BBB short −5 unrealized; Friday: realized +40, CCC +6.
    assert result.previous_equity == D(10025) and result.equity == D(10046)
    assert result.day_pnl == D(21)
    assert result.portfolio_return == (D(10046) / D(10025) - 1).quantize(D("0.00000001"))
    assert result.spy_return == D("0.01")
    assert (result.trades_opened, result.trades_closed, result.wins, result.losses) == (2, 3, 1, 1)
    assert result.closes_by_reason == {"max_age": 1, "stop_loss": 1, "take_profit": 1}
    assert (result.buys, result.sells, result.row().buy_sell) == (2, 3, "2:3")
    assert result.win_rate == (D(1) / D(3)).quantize(D("0.00000001"))
    row = result.row()
    assert row.excess_return == result.portfolio_return - D("0.01") and row.win_rate == result.win_rate


def test_day_performance_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="before"):
        day_performance(
            DayBounds.of(THU),
            DayBounds.of(FRI),
            [],
            marks={},
            previous_marks={},
            initial_capital=D(1),
            spy_close=None,
            spy_previous_close=None,
        )
    with pytest.raises(ValueError, match="capital"):
        day_performance(
            DayBounds.of(FRI),
            DayBounds.of(THU),
            [],
            marks={},
            previous_marks={},
            initial_capital=D(0),
            spy_close=None,
            spy_previous_close=None,
        )


def test_missing_prices_give_no_return_rather_than_zero() -> None:
    assert pct_change(None, D(1)) is None and pct_change(D(1), None) is None and pct_change(D(1), D(0)) is None
    assert win_rate(0, 0) is None and win_rate(2, 4) == D("0.5")
    assert as_percent(None) == "n/a" and as_percent(D("-0.000001")) == "0.00%" and as_percent(D("0.0125")) == "1.25%"


def test_growth_curve_compounds_and_carries_gaps() -> None:
    curve = growth_curve(
        [
            (date(2026, 11, 19), D("0.10"), None),
            (date(2026, 11, 18), D("0.10"), D("-0.5")),
            (date(2026, 11, 20), None, D("1")),
        ]
    )
    assert [p.day for p in curve] == [date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)]
    assert [p.portfolio for p in curve] == [D(110), D(121), D(121)]
    assert [p.benchmark for p in curve] == [D(50), D(50), D(100)]


money = st.decimals(min_value=D("0.5"), max_value=D(500), places=2)
moments = st.integers(min_value=0, max_value=6 * 24 * 60).map(
    lambda minutes: datetime(2026, 11, 16, 5, tzinfo=UTC) + timedelta(minutes=minutes)
)


@st.composite
def trade_facts(draw: st.DrawFn) -> TradeFacts:
    entry_at = draw(moments)
    closed_at = draw(st.one_of(st.none(), moments.filter(lambda m: m > entry_at)))
    return TradeFacts(
        symbol=draw(st.sampled_from(["AAA", "BBB", "CCC"])),
        side=draw(st.sampled_from(list(PositionSide))),
        qty=D(draw(st.integers(min_value=1, max_value=50))),
        entry_price=draw(money),
        entry_at=entry_at,
        closed_at=closed_at,
        close_price=draw(money) if closed_at is not None else None,
    )


@settings(max_examples=150, deadline=None)
@given(
    trades=st.lists(trade_facts(), max_size=12),
    closes_thu=st.fixed_dictionaries({s: money for s in ("AAA", "BBB", "CCC")}),
    closes_fri=st.fixed_dictionaries({s: money for s in ("AAA", "BBB", "CCC")}),
)
def test_day_pnl_is_the_sum_of_each_positions_change_in_value(trades, closes_thu, closes_fri) -> None:
    """Aggregate equity change == Σ per trade (value at Friday's close − value at Thursday's close), where a
    trade's value is its realized P&L once closed, its marked P&L while open, and 0 before it opens."""
    marks_thu = {s: Mark(p, THU) for s, p in closes_thu.items()}
    marks_fri = {s: Mark(p, FRI) for s, p in closes_fri.items()}
    result = day_performance(
        DayBounds.of(FRI),
        DayBounds.of(THU),
        trades,
        marks=marks_fri,
        previous_marks=marks_thu,
        initial_capital=D(100000),
        spy_close=None,
        spy_previous_close=None,
    )

    def value(t: TradeFacts, moment: datetime, marks: dict[str, Mark]) -> Decimal:
        if t.entry_at >= moment:
            return D(0)
        if t.closed_at is not None and t.closed_at < moment:
            return (t.close_price - t.entry_price) * t.qty * (1 if t.side is PositionSide.LONG else -1)
        return (marks[t.symbol].price - t.entry_price) * t.qty * (1 if t.side is PositionSide.LONG else -1)

    thu_end, fri_end = DayBounds.of(THU).end, DayBounds.of(FRI).end
    expected = sum((value(t, fri_end, marks_fri) - value(t, thu_end, marks_thu) for t in trades), D(0))
    assert result.day_pnl == expected
    assert result.trades_closed == sum(1 for t in trades if t.closed_at and DayBounds.of(FRI).contains(t.closed_at))
    assert result.wins + result.losses <= result.trades_closed
