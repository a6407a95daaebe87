"""The market simulator without HTTP: universe, NYSE sessions, prices, history, scenarios, order semantics."""

from __future__ import annotations

import itertools
import re
import time
import warnings
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import exchange_calendars as xcals
import pytest

from trading_pipeline.sim.errors import SimApiError
from trading_pipeline.sim.market import Market
from trading_pipeline.sim.universe import generate_universe

try:
    from trading_pipeline_tests.sim_fixtures import SESSION_START, tradable_symbols
except ImportError:  # run from inside the tests folder
    from sim_fixtures import SESSION_START, tradable_symbols  # type: ignore[no-redef]

# Thanksgiving 2026 is Thursday 26 November; Friday 27 November closes at 13:00 New York (18:00 UTC).
THANKSGIVING = date(2026, 11, 26)
HALF_DAY = date(2026, 11, 27)


def make_market(start: datetime = SESSION_START, seed: int = 7, n: int = 200) -> Market:
    return Market(seed=seed, n_symbols=n, start=start)


def quotes_of(market: Market) -> dict[str, tuple[Decimal, Decimal, datetime]]:
    return {s: (q.bid, q.ask, q.timestamp) for s, q in market.quotes(market.symbols).items()}


def buy(market: Market, symbol: str, qty: int = 10, **extra: object):
    return market.submit_order(
        {"symbol": symbol, "qty": qty, "side": "buy", "type": "market", "time_in_force": "day", **extra}
    )


# ---- universe -------------------------------------------------------------------------------------------


def test_universe_is_alphabetical_unique_equity_like_and_includes_spy() -> None:
    assets = generate_universe(7, 5000)
    symbols = [a.symbol for a in assets]
    assert len(symbols) == 5000 == len(set(symbols))
    assert symbols == sorted(symbols)
    assert "SPY" in symbols
    assert all(re.fullmatch(r"[A-Z]{1,5}", s) for s in symbols)
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a.id) for a in assets
    )
    inactive = [a for a in assets if a.status == "inactive"]
    untradable_active = [a for a in assets if a.status == "active" and not a.tradable]
    assert 50 < len(inactive) < 500 and 50 < len(untradable_active) < 500  # the filters have work to do
    assert all(not a.tradable for a in inactive)


def test_universe_generation_is_fast_and_deterministic_per_seed() -> None:
    started = time.perf_counter()
    first = generate_universe(11, 5000)
    # The one wall-clock bound in these tests, kept because speed is the point (every SimBroker builds a
    # universe) and made generous: ~0.15 s unloaded, 0.57 s seen on a loaded 2-core box (the old 0.5 s flaked).
    assert time.perf_counter() - started < 5.0
    assert generate_universe(11, 5000) == first
    assert [a.symbol for a in generate_universe(12, 5000)] != [a.symbol for a in first]


# ---- sessions and the clock -----------------------------------------------------------------------------


def test_sessions_come_from_exchange_calendars_including_holidays_and_half_days() -> None:
    market = make_market()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")  # library noise
        xnys = xcals.get_calendar("XNYS", start="2024-01-02", end="2028-12-29")
    window = (date(2025, 1, 1), date(2027, 12, 31))
    expected = {
        ts.date(): close.to_pydatetime() for ts, close in xnys.closes.items() if window[0] <= ts.date() <= window[1]
    }
    ours = {market.sessions.days[i]: market.sessions.closes[i] for i in market.sessions.indices_between(*window)}
    assert ours == expected
    assert market.sessions.index_of_day(THANKSGIVING) is None
    half = market.sessions.index_of_day(HALF_DAY)
    assert half is not None and market.sessions.is_half_day(half)
    assert market.sessions.closes[half] == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def test_clock_open_closed_weekend_holiday_and_half_day() -> None:
    market = make_market(start=datetime(2026, 11, 24, 20, 59, tzinfo=UTC))
    assert market.clock().is_open
    market.set_time(datetime(2026, 11, 24, 21, 0, tzinfo=UTC))  # 16:00 New York: closed
    clock = market.clock()
    assert not clock.is_open and clock.next_open == datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
    market.set_time(datetime(2026, 11, 26, 16, 0, tzinfo=UTC))  # Thanksgiving
    clock = market.clock()
    assert not clock.is_open
    assert clock.next_open == datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert clock.next_close == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # half day
    market.set_time(datetime(2026, 11, 27, 18, 30, tzinfo=UTC))  # after the half-day close
    assert not market.clock().is_open
    market.set_time(datetime(2026, 11, 28, 16, 0, tzinfo=UTC))  # Saturday
    clock = market.clock()
    assert not clock.is_open and clock.next_open == datetime(2026, 11, 30, 14, 30, tzinfo=UTC)


def test_prices_move_only_during_sessions() -> None:
    market = make_market(start=datetime(2026, 11, 25, 21, 5, tzinfo=UTC))  # Wednesday after the close
    closed = quotes_of(market)
    market.set_time(datetime(2026, 11, 27, 14, 29, tzinfo=UTC))  # through Thanksgiving, before Friday's open
    assert quotes_of(market) == closed
    market.set_time(datetime(2026, 11, 27, 15, 0, tzinfo=UTC))
    moved = quotes_of(market)
    assert sum(moved[s][0] != closed[s][0] for s in closed) > len(closed) * 0.8
    assert all(ts == datetime(2026, 11, 27, 15, 0, tzinfo=UTC) for _, _, ts in moved.values())


def test_quotes_are_sane_and_deterministic_however_the_clock_gets_there() -> None:
    one_step = make_market()
    many_steps = make_market()
    one_step.advance(timedelta(hours=2))
    for _ in range(120):
        many_steps.advance(timedelta(minutes=1))
    assert quotes_of(one_step) == quotes_of(many_steps)
    for bid, ask, ts in quotes_of(one_step).values():
        assert Decimal(0) < bid < ask
        assert ts.tzinfo is not None
    assert quotes_of(make_market(seed=8)) != quotes_of(make_market())


def test_clock_never_goes_backwards_and_needs_aware_datetimes() -> None:
    market = make_market()
    with pytest.raises(ValueError, match="cannot go back"):
        market.set_time(SESSION_START - timedelta(minutes=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        market.set_time(datetime(2026, 11, 24, 16, 0))


# ---- history --------------------------------------------------------------------------------------------


def test_daily_bars_exist_for_past_sessions_and_are_consistent() -> None:
    market = make_market()
    symbols = ["SPY", *market.symbols[:20]]
    bars = market.daily_bars(symbols, date(2026, 10, 20), date(2026, 11, 23))
    expected_days = [
        market.sessions.days[i] for i in market.sessions.indices_between(date(2026, 10, 20), date(2026, 11, 23))
    ]
    assert len(expected_days) >= 20
    for symbol in symbols:
        series = bars[symbol]
        assert [b.day for b in series] == expected_days
        for previous, bar in itertools.pairwise(series):
            assert bar.low <= min(bar.open, bar.close) and bar.high >= max(bar.open, bar.close) and bar.low > 0
            assert abs(bar.open / previous.close - 1) < Decimal("0.15")  # an overnight gap, not a new price
            assert bar.volume > 0
    assert make_market().daily_bars(symbols, date(2026, 10, 20), date(2026, 11, 23)) == bars


def test_todays_walk_starts_from_the_previous_close_and_becomes_todays_bar() -> None:
    market = make_market(start=datetime(2026, 11, 24, 14, 0, tzinfo=UTC))  # before the open
    symbol = "SPY"
    yesterday = market.daily_bars([symbol], date(2026, 11, 23), date(2026, 11, 23))[symbol][-1]
    quote = market.quote(symbol)
    assert quote is not None and quote.bid <= yesterday.close <= quote.ask
    market.set_time(datetime(2026, 11, 24, 21, 30, tzinfo=UTC))  # after the close
    today = market.daily_bars([symbol], date(2026, 11, 24), date(2026, 11, 24))[symbol]
    assert len(today) == 1 and today[0].close == market.last_price(symbol)
    assert today[0].low <= today[0].open <= today[0].high
    later = market.daily_bars([symbol], date(2026, 11, 24), date(2026, 12, 31))[symbol]
    assert [b.day for b in later] == [date(2026, 11, 24)]  # no bars for sessions that have not happened


# ---- orders ---------------------------------------------------------------------------------------------


def test_market_order_fills_at_the_ask_and_builds_a_position() -> None:
    market = make_market()
    symbol = tradable_symbols(market, 1)[0]
    quote = market.quote(symbol)
    assert quote is not None
    order = buy(market, symbol, 10, client_order_id="buy-1")
    assert order.status == "filled" and order.filled_avg_price == quote.ask and order.filled_qty == 10
    position = market.book.positions[symbol]
    assert position.qty == 10 and position.avg_entry_price == quote.ask
    assert market.book.cash == Decimal("100000") - 10 * quote.ask


def test_market_order_while_closed_is_accepted_and_fills_at_the_open() -> None:
    market = make_market(start=datetime(2026, 11, 24, 22, 0, tzinfo=UTC))
    symbol = tradable_symbols(market, 1)[0]
    order = buy(market, symbol)
    assert order.status == "accepted" and order.filled_qty == 0
    market.set_time(datetime(2026, 11, 25, 14, 30, tzinfo=UTC))
    assert order.status == "filled" and order.filled_at == datetime(2026, 11, 25, 14, 30, tzinfo=UTC)


def test_stop_fills_when_crossed_with_no_client_involved() -> None:
    market = make_market()
    symbol = tradable_symbols(market, 1)[0]
    buy(market, symbol)
    quote = market.quote(symbol)
    assert quote is not None
    stop_price = (quote.bid * Decimal("0.995")).quantize(Decimal("0.01"))
    stop = market.submit_order(
        {
            "symbol": symbol,
            "qty": 10,
            "side": "sell",
            "type": "stop",
            "stop_price": str(stop_price),
            "time_in_force": "gtc",
        }
    )
    assert stop.status == "new"
    deadline = market.now + timedelta(days=30)
    while stop.status == "new" and market.now < deadline:
        market.advance(timedelta(minutes=30))  # only the clock moves; every minute is evaluated
    assert stop.status == "filled"
    assert stop.filled_at is not None and stop.filled_at.second == 0  # at a price step, not at our poll
    assert stop.filled_avg_price is not None and stop.filled_avg_price <= stop_price
    assert symbol not in market.book.positions


def test_gap_down_fills_the_stop_through_its_level() -> None:
    market = make_market()
    symbol = tradable_symbols(market, 1)[0]
    buy(market, symbol)
    quote = market.quote(symbol)
    assert quote is not None
    stop_price = (quote.bid * Decimal("0.95")).quantize(Decimal("0.01"))
    stop = market.submit_order(
        {
            "symbol": symbol,
            "qty": 10,
            "side": "sell",
            "type": "stop",
            "stop_price": str(stop_price),
            "time_in_force": "gtc",
        }
    )
    market.gap(symbol, -15)
    assert stop.status == "filled"
    assert stop.filled_avg_price is not None and stop.filled_avg_price < stop_price * Decimal("0.92")


def test_bracket_legs_are_held_until_the_entry_fills_then_one_cancels_the_other() -> None:
    market = make_market(start=datetime(2026, 11, 24, 22, 0, tzinfo=UTC))  # closed: the entry waits
    symbol = tradable_symbols(market, 1)[0]
    quote = market.quote(symbol)
    assert quote is not None
    entry = buy(
        market,
        symbol,
        10,
        order_class="bracket",
        take_profit={"limit_price": str((quote.ask * Decimal("1.5")).quantize(Decimal("0.01")))},
        stop_loss={"stop_price": str((quote.bid * Decimal("0.5")).quantize(Decimal("0.01")))},
    )
    take_profit, stop_loss = market.book.legs(entry)
    assert entry.status == "accepted"
    assert (take_profit.type, take_profit.side, take_profit.status) == ("limit", "sell", "held")
    assert (stop_loss.type, stop_loss.side, stop_loss.status) == ("stop", "sell", "held")
    assert market.book.held_for_orders(symbol) == 0  # legs waiting for their entry hold nothing
    market.set_time(datetime(2026, 11, 25, 14, 31, tzinfo=UTC))
    # As Alpaca reports a filled bracket: the take-profit is routed (new), the stop stays held on Alpaca's side.
    assert entry.status == "filled" and take_profit.status == "new" and stop_loss.status == "held"
    assert (take_profit.parent_id, stop_loss.parent_id) == (entry.id, entry.id)
    assert market.book.held_for_orders(symbol) == 10  # the pair holds the position once
    market.set_price(symbol, quote.ask * 2, quote.ask * 2 + Decimal("0.02"))
    assert take_profit.status == "filled" and stop_loss.status == "canceled"
    assert symbol not in market.book.positions


def test_a_held_bracket_stop_still_triggers_on_a_cross_and_cancels_the_take_profit() -> None:
    market = make_market()
    symbol = tradable_symbols(market, 1)[0]
    quote = market.quote(symbol)
    assert quote is not None
    entry = buy(
        market,
        symbol,
        10,
        time_in_force="gtc",
        order_class="bracket",
        take_profit={"limit_price": str((quote.ask * Decimal("1.5")).quantize(Decimal("0.01")))},
        stop_loss={"stop_price": str((quote.bid * Decimal("0.9")).quantize(Decimal("0.01")))},
    )
    take_profit, stop_loss = market.book.legs(entry)
    assert entry.status == "filled" and stop_loss.status == "held"
    market.gap(symbol, -20)
    assert stop_loss.status == "filled" and take_profit.status == "canceled"
    assert symbol not in market.book.positions


def test_canceling_a_leg_cancels_the_whole_group_while_the_entry_is_open() -> None:
    market = make_market(start=datetime(2026, 11, 24, 22, 0, tzinfo=UTC))  # closed: the entry waits
    symbol = tradable_symbols(market, 1)[0]
    quote = market.quote(symbol)
    assert quote is not None
    entry = buy(
        market,
        symbol,
        3,
        order_class="bracket",
        take_profit={"limit_price": str((quote.ask * Decimal("1.5")).quantize(Decimal("0.01")))},
        stop_loss={"stop_price": str((quote.bid * Decimal("0.5")).quantize(Decimal("0.01")))},
    )
    take_profit, stop_loss = market.book.legs(entry)
    market.cancel_order(stop_loss.id)
    assert [o.status for o in (entry, take_profit, stop_loss)] == ["canceled"] * 3


def test_oco_on_an_existing_position_and_quantity_held_by_its_legs() -> None:
    market = make_market()
    symbol = tradable_symbols(market, 1)[0]
    buy(market, symbol, 10)
    quote = market.quote(symbol)
    assert quote is not None
    oco = market.submit_order(
        {
            "symbol": symbol,
            "qty": 10,
            "side": "sell",
            "type": "limit",
            "time_in_force": "gtc",
            "order_class": "oco",
            "take_profit": {"limit_price": str(quote.ask * 2)},
            "stop_loss": {"stop_price": str((quote.bid / 2).quantize(Decimal("0.01")))},
        }
    )
    (stop_leg,) = market.book.legs(oco)
    assert oco.status == "new" and stop_leg.status == "held" and stop_leg.parent_id == oco.id
    assert market.book.held_for_orders(symbol) == 10  # the pair holds the quantity once
    with pytest.raises(SimApiError) as refused:
        market.close_position(symbol)
    assert refused.value.status == 403 and "insufficient qty available" in refused.value.message
    with pytest.raises(SimApiError, match="insufficient qty available"):
        market.submit_order({"symbol": symbol, "qty": 1, "side": "sell", "type": "market", "time_in_force": "day"})
    market.cancel_order(stop_leg.id)  # canceling one leg cancels the pair
    assert oco.status == "canceled" and stop_leg.status == "canceled"
    close = market.close_position(symbol)
    assert close.status == "filled" and symbol not in market.book.positions


def test_short_sale_and_cover() -> None:
    market = make_market()
    symbol = tradable_symbols(market, 1)[0]
    quote = market.quote(symbol)
    assert quote is not None
    market.submit_order({"symbol": symbol, "qty": 5, "side": "sell", "type": "market", "time_in_force": "day"})
    position = market.book.positions[symbol]
    assert position.qty == -5 and position.side == "short" and position.avg_entry_price == quote.bid
    assert market.book.cash == Decimal("100000") + 5 * quote.bid
    cover = market.close_position(symbol)
    assert cover.side == "buy" and cover.status == "filled" and symbol not in market.book.positions


def test_duplicate_client_order_id_and_invalid_orders_are_refused() -> None:
    market = make_market()
    symbol = tradable_symbols(market, 1)[0]
    buy(market, symbol, 1, client_order_id="same")
    with pytest.raises(SimApiError) as duplicate:
        buy(market, symbol, 1, client_order_id="same")
    assert duplicate.value.status == 422 and duplicate.value.message == "client_order_id must be unique"
    for bad, message in [
        ({"qty": 0}, "qty must be > 0"),
        ({"qty": -3}, "qty must be > 0"),
        ({"side": "hold"}, "invalid side"),
        ({"type": "iceberg"}, "invalid type"),
        ({"type": "limit"}, "limit_price is required"),
        ({"symbol": "NOPE12"}, "asset not found"),
    ]:
        with pytest.raises(SimApiError, match=message) as refused:
            market.submit_order(
                {"symbol": symbol, "qty": 1, "side": "buy", "type": "market", "time_in_force": "day", **bad}
            )
        assert refused.value.status == 422


def test_halt_and_stale_scenarios() -> None:
    market = make_market()
    halted, stale = tradable_symbols(market, 2)
    buy(market, halted, 10)
    quote = market.quote(halted)
    assert quote is not None
    stop = market.submit_order(
        {
            "symbol": halted,
            "qty": 10,
            "side": "sell",
            "type": "stop",
            "stop_price": str(quote.bid - Decimal("0.01")),
            "time_in_force": "gtc",
        }
    )
    market.halt(halted)
    market.stale(stale)
    stale_quote = market.quote(stale)
    market.advance(timedelta(minutes=45))
    asset = market.asset(halted)
    assert asset is not None and asset.tradable  # a halt is the venue's: Alpaca still lists the asset tradable
    assert market.quote(halted) == quote  # no new quotes
    assert market.quote(stale) == stale_quote  # the timestamp stopped advancing
    assert stop.status == "new"  # nothing fills during a halt
    queued = buy(market, halted, 1)  # accepted during the halt, filled after it
    assert queued.status == "new" and queued.filled_qty == 0
    market.resume(stale)
    market.advance(timedelta(minutes=1))
    resumed = market.quote(stale)
    assert resumed is not None and stale_quote is not None and resumed.timestamp > stale_quote.timestamp


def test_day_orders_expire_at_the_close() -> None:
    market = make_market()
    symbol = tradable_symbols(market, 1)[0]
    quote = market.quote(symbol)
    assert quote is not None
    limit = market.submit_order(
        {
            "symbol": symbol,
            "qty": 1,
            "side": "buy",
            "type": "limit",
            "limit_price": str((quote.bid / 3).quantize(Decimal("0.01"))),
            "time_in_force": "day",
        }
    )
    assert limit.status == "new"
    market.set_time(datetime(2026, 11, 24, 21, 0, tzinfo=UTC))
    assert limit.status == "expired"
