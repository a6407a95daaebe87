"""Exit rules: long and short, bid/ask aware, bad quotes refused, trailing marks only ratchet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from trading_pipeline.domain.exits import (
    InvalidLevels,
    InvalidQuote,
    PositionView,
    decide_exit,
    next_high_water_mark,
    validate_levels,
)
from trading_pipeline.domain.types import ExitReason, PositionSide, Quote

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
D = Decimal


def long(**kw: object) -> PositionView:
    base = dict(
        symbol="ACME",
        side=PositionSide.LONG,
        qty=D(10),
        entry_price=D(100),
        opened_at=NOW,
        stop_loss=D(95),
        take_profit=D(110),
    )
    base.update(kw)
    return PositionView(**base)  # type: ignore[arg-type]


def short(**kw: object) -> PositionView:
    base = dict(
        symbol="ACME",
        side=PositionSide.SHORT,
        qty=D(10),
        entry_price=D(100),
        opened_at=NOW,
        stop_loss=D(105),
        take_profit=D(90),
    )
    base.update(kw)
    return PositionView(**base)  # type: ignore[arg-type]


def quote(bid: str | Decimal, ask: str | Decimal, symbol: str = "ACME", at: datetime = NOW) -> Quote:
    return Quote(symbol, D(bid), D(ask), at)


class TestLong:
    def test_holds_between_levels(self) -> None:
        assert decide_exit(long(), quote("100", "100.1")) is None

    def test_stop_loss_on_bid_at_or_below_stop(self) -> None:
        decision = decide_exit(long(), quote("95", "95.2"))
        assert decision is not None and decision.reason is ExitReason.STOP_LOSS
        assert decision.reference_price == D("95") and decision.trigger_price == D(95)

    def test_ask_below_stop_but_bid_above_is_not_a_stop_for_a_long(self) -> None:
        # Impossible book (ask < bid) is refused elsewhere; here: only the bid matters for a long.
        assert decide_exit(long(), quote("95.01", "96")) is None

    def test_gap_down_through_stop_reports_the_gap_price(self) -> None:
        decision = decide_exit(long(), quote("80", "80.1"))
        assert decision is not None and decision.reason is ExitReason.STOP_LOSS
        assert decision.reference_price == D(80)

    def test_take_profit_on_bid(self) -> None:
        decision = decide_exit(long(), quote("110", "110.2"))
        assert decision is not None and decision.reason is ExitReason.TAKE_PROFIT
        assert decide_exit(long(), quote("109.9", "110.5")) is None


class TestShort:
    def test_stop_loss_on_ask_at_or_above_stop(self) -> None:
        decision = decide_exit(short(), quote("104.8", "105"))
        assert decision is not None and decision.reason is ExitReason.STOP_LOSS
        assert decision.reference_price == D(105)

    def test_take_profit_on_ask(self) -> None:
        decision = decide_exit(short(), quote("89.8", "90"))
        assert decision is not None and decision.reason is ExitReason.TAKE_PROFIT

    def test_holds(self) -> None:
        assert decide_exit(short(), quote("99.9", "100")) is None


class TestTrailing:
    def test_trailing_stop_fires_from_the_high_water_mark(self) -> None:
        pos = long(stop_loss=D(90), take_profit=None, trailing_pct=D(5), high_water_mark=D(120))
        decision = decide_exit(pos, quote("113.9", "114"))
        assert decision is not None and decision.reason is ExitReason.TRAILING_STOP
        assert decision.trigger_price == D(114)
        assert decide_exit(pos, quote("114.1", "114.2")) is None

    def test_new_high_raises_the_mark_and_does_not_fire(self) -> None:
        pos = long(stop_loss=None, take_profit=None, trailing_pct=D(5), high_water_mark=D(120))
        assert decide_exit(pos, quote("130", "130.1")) is None
        assert next_high_water_mark(pos, quote("130", "130.1")) == D(130)

    def test_short_mark_is_the_lowest_ask(self) -> None:
        pos = short(stop_loss=None, take_profit=None, trailing_pct=D(5), high_water_mark=D(80))
        assert next_high_water_mark(pos, quote("70", "75")) == D(75)
        decision = decide_exit(pos, quote("83.9", "84"))
        assert decision is not None and decision.reason is ExitReason.TRAILING_STOP

    @given(
        st.lists(st.decimals(min_value=1, max_value=1000, places=2, allow_nan=False), min_size=1, max_size=30),
        st.sampled_from(list(PositionSide)),
    )
    def test_mark_ratchets_in_favour_and_never_back(self, prices: list[Decimal], side: PositionSide) -> None:
        pos = PositionView("ACME", side, D(1), D(100), NOW, trailing_pct=D(3))
        marks = []
        for price in prices:
            mark = next_high_water_mark(pos, quote(price, price))
            pos = PositionView("ACME", side, D(1), D(100), NOW, trailing_pct=D(3), high_water_mark=mark)
            marks.append(mark)
        if side is PositionSide.LONG:
            assert marks == sorted(marks) and marks[-1] == max([D(100), *prices])
        else:
            assert marks == sorted(marks, reverse=True) and marks[-1] == min([D(100), *prices])


def test_precedence_stop_before_take_profit_before_max_age() -> None:
    # A stop at or above the bid wins even if max age is also reached.
    decision = decide_exit(long(), quote("94", "94.1"), trading_days_held=10, max_age_trading_days=3)
    assert decision is not None and decision.reason is ExitReason.STOP_LOSS
    decision = decide_exit(long(), quote("100", "100.1"), trading_days_held=3, max_age_trading_days=3)
    assert decision is not None and decision.reason is ExitReason.MAX_AGE and decision.trigger_price is None
    assert decide_exit(long(), quote("100", "100.1"), trading_days_held=2, max_age_trading_days=3) is None


@pytest.mark.parametrize(
    ("bid", "ask", "problem"),
    [
        ("NaN", "100", "NaN"),
        ("100", "NaN", "NaN"),
        ("0", "100", "above 0"),
        ("-1", "100", "above 0"),
        ("Infinity", "100", "above 0"),
        ("101", "100", "crossed"),
    ],
)
def test_unusable_quotes_raise_instead_of_deciding(bid: str, ask: str, problem: str) -> None:
    with pytest.raises(InvalidQuote, match=problem) as info:
        decide_exit(long(), quote(bid, ask))
    assert info.value.symbol == "ACME"


def test_stale_quote_is_refused_when_a_limit_is_given() -> None:
    old = quote("50", "50.1", at=NOW - timedelta(minutes=10))
    with pytest.raises(InvalidQuote, match="stale"):
        decide_exit(long(), old, now=NOW, max_quote_age=timedelta(minutes=5))
    assert decide_exit(long(), old) is not None  # without a limit the caller accepted the age


def test_a_quote_a_day_and_ten_seconds_old_is_stale_against_a_300s_limit() -> None:
    """A day and 10 s is 86,410 s, not 10 s (`timedelta.seconds` drops the days)."""
    old = quote("99", "99.1", at=NOW - timedelta(days=1, seconds=10))
    with pytest.raises(InvalidQuote, match="stale"):
        decide_exit(long(), old, now=NOW, max_quote_age=timedelta(seconds=300))


def test_quote_for_another_symbol_is_refused() -> None:
    with pytest.raises(InvalidQuote, match="position is ACME"):
        decide_exit(long(), quote("50", "51", symbol="OTHER"))


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(InvalidQuote, match="timezone"):
        decide_exit(long(), Quote("ACME", D(1), D(2), datetime(2026, 1, 1)))


def test_float_prices_are_refused() -> None:
    with pytest.raises(InvalidQuote, match="Decimal"):
        decide_exit(long(), Quote("ACME", 99.0, D(100), NOW))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("position", "message"),
    [
        (long(stop_loss=D(101)), "stop_loss must be below"),
        (long(take_profit=D(99)), "take_profit must be above"),
        (short(stop_loss=D(99)), "stop_loss must be above"),
        (short(take_profit=D(101)), "take_profit must be below"),
        (long(qty=D(0)), "qty must be above 0"),
        (long(entry_price=D(-1)), "entry price"),
        (long(stop_loss=D(-5)), "must be a price above 0"),
        (long(trailing_pct=D(100)), "trailing_pct"),
    ],
)
def test_contradictory_levels_are_refused(position: PositionView, message: str) -> None:
    with pytest.raises(InvalidLevels, match=message):
        validate_levels(position)


def test_consistent_levels_pass() -> None:
    validate_levels(long())
    validate_levels(short())


prices = st.decimals(min_value=D("0.01"), max_value=D(10000), places=2, allow_nan=False, allow_infinity=False)


@given(entry=prices, stop_gap=prices, bid=prices, spread=st.decimals(min_value=0, max_value=5, places=2))
def test_long_stop_fires_exactly_when_bid_at_or_below_stop(
    entry: Decimal, stop_gap: Decimal, bid: Decimal, spread: Decimal
) -> None:
    stop = entry - stop_gap
    assume(stop > 0)
    pos = PositionView("X", PositionSide.LONG, D(1), entry, NOW, stop_loss=stop)
    decision = decide_exit(pos, Quote("X", bid, bid + spread, NOW))
    assert (decision is not None and decision.reason is ExitReason.STOP_LOSS) == (bid <= stop)


@given(entry=prices, stop_gap=prices, ask=prices, spread=st.decimals(min_value=0, max_value=5, places=2))
def test_short_stop_fires_exactly_when_ask_at_or_above_stop(
    entry: Decimal, stop_gap: Decimal, ask: Decimal, spread: Decimal
) -> None:
    stop = entry + stop_gap
    bid = ask - spread
    assume(bid > 0)
    pos = PositionView("X", PositionSide.SHORT, D(1), entry, NOW, stop_loss=stop)
    decision = decide_exit(pos, Quote("X", bid, ask, NOW))
    assert (decision is not None and decision.reason is ExitReason.STOP_LOSS) == (ask >= stop)


def test_the_brokers_stop_follows_a_trailing_level_and_never_passes_it() -> None:
    from trading_pipeline.domain.exits import broker_stop_is_current, broker_stop_level

    long = PositionView(
        "AAA",
        PositionSide.LONG,
        Decimal(1),
        Decimal(100),
        NOW,
        stop_loss=Decimal(97),
        trailing_pct=Decimal(2),
        high_water_mark=Decimal("110.37"),
    )
    assert broker_stop_level(long) == Decimal("108.16")  # 110.37 × 0.98 = 108.1626, down to the cent
    assert broker_stop_is_current(long, Decimal("108.16"))
    assert broker_stop_is_current(long, Decimal("107.90"))  # within 0.25 % behind: not worth a replace
    assert not broker_stop_is_current(long, Decimal(97))  # the initial stop, left behind
    assert not broker_stop_is_current(long, Decimal("108.20"))  # beyond the level: never
    fixed = PositionView("AAA", PositionSide.LONG, Decimal(1), Decimal(100), NOW, stop_loss=Decimal(97))
    assert broker_stop_level(fixed) == Decimal(97) and not broker_stop_is_current(fixed, Decimal("96.99"))
    short = PositionView(
        "BBB",
        PositionSide.SHORT,
        Decimal(1),
        Decimal(100),
        NOW,
        stop_loss=Decimal(103),
        trailing_pct=Decimal(2),
        high_water_mark=Decimal(90),
    )
    assert broker_stop_level(short) == Decimal("91.80")
