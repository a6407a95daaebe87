"""Partial fills as Alpaca's paper engine makes them: a market order fills in part, stays working, and the rest
fills at a later matching pass; position, cash and the order's average price follow every fill."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from trading_pipeline.sim.faults import FaultInjector
from trading_pipeline.sim.market import Market

try:
    from trading_pipeline_tests.sim_fixtures import SESSION_START, tradable_symbols
except ImportError:  # run from inside the tests folder
    from sim_fixtures import SESSION_START, tradable_symbols  # type: ignore[no-redef]


def market_with_position(qty: int = 10) -> tuple[Market, str]:
    market = Market(seed=7, n_symbols=50, start=SESSION_START)
    symbol = tradable_symbols(market, 1)[0]
    market.submit_order({"symbol": symbol, "qty": qty, "side": "buy", "type": "market", "time_in_force": "day"})
    return market, symbol


def sell(market: Market, symbol: str, qty: int):
    return market.submit_order({"symbol": symbol, "qty": qty, "side": "sell", "type": "market", "time_in_force": "day"})


def test_a_partial_fill_leaves_the_rest_working_until_a_later_pass() -> None:
    market, symbol = market_with_position(10)
    cash_before = market.book.cash
    market.configure_partial_fills(rate=1.0, fraction=Decimal("0.4"))
    order = sell(market, symbol, 10)
    assert (order.status, order.filled_qty, order.filled_at) == ("partially_filled", Decimal(4), None)
    assert market.book.positions[symbol].qty == 6
    first_price = order.filled_avg_price
    assert first_price is not None and market.book.cash == cash_before + 4 * first_price
    # What is still working holds the unsold shares: nothing else may sell them.
    assert market.book.qty_available(symbol) == 0
    market.configure_partial_fills(rate=0.0)
    market.advance(timedelta(minutes=1))
    assert (order.status, order.filled_qty) == ("filled", Decimal(10))
    assert symbol not in market.book.positions
    assert order.filled_at == market.now
    second_price = market.book.orders[order.id].filled_avg_price
    assert second_price is not None
    assert market.book.cash == cash_before + 10 * second_price  # the average over both fills is what was paid


def test_a_partly_filled_order_canceled_keeps_what_filled() -> None:
    market, symbol = market_with_position(10)
    market.configure_partial_fills(rate=1.0, fraction=Decimal("0.5"))
    order = sell(market, symbol, 10)
    market.cancel_order(order.id)
    assert (order.status, order.filled_qty) == ("canceled", Decimal(5))
    assert market.book.positions[symbol].qty == 5 and market.book.qty_available(symbol) == 5


def test_a_bracket_entry_filled_in_part_keeps_its_legs_waiting() -> None:
    market = Market(seed=7, n_symbols=50, start=SESSION_START)
    symbol = tradable_symbols(market, 1)[0]
    price = market.last_price(symbol)
    market.configure_partial_fills(rate=1.0, fraction=Decimal("0.5"))
    entry = market.submit_order(
        {
            "symbol": symbol,
            "qty": 10,
            "side": "buy",
            "type": "market",
            "time_in_force": "gtc",
            "order_class": "bracket",
            "take_profit": {"limit_price": str((price * Decimal("1.5")).quantize(Decimal("0.01")))},
            "stop_loss": {"stop_price": str((price * Decimal("0.5")).quantize(Decimal("0.01")))},
        }
    )
    assert entry.status == "partially_filled"
    legs = market.book.legs(entry)
    assert all(leg.id not in market.book.working for leg in legs)  # "won't be active until ... completely filled"
    market.configure_partial_fills(rate=0.0)
    market.advance(timedelta(minutes=1))
    assert entry.status == "filled"
    assert sorted(leg.status for leg in legs) == ["held", "new"]


def test_partial_fills_only_touch_market_orders_and_reject_bad_settings() -> None:
    market, symbol = market_with_position(10)
    market.configure_partial_fills(rate=1.0)
    bid = market.quote(symbol).bid  # type: ignore[union-attr]
    limit = market.submit_order(
        {"symbol": symbol, "qty": 10, "side": "sell", "type": "limit", "limit_price": str(bid), "time_in_force": "day"}
    )
    assert limit.status == "filled"
    with pytest.raises(ValueError, match="rate must be between 0 and 1"):
        market.configure_partial_fills(rate=1.5)
    with pytest.raises(ValueError, match="fraction must be strictly between 0 and 1"):
        market.configure_partial_fills(rate=0.5, fraction=1)


def test_scripted_faults_report_whether_any_are_still_waiting() -> None:
    faults = FaultInjector()
    assert not faults.scripted_pending()
    faults.fail_next("500", count=2, route="GET /v2/clock")
    faults.decide("GET /v2/clock")
    assert faults.scripted_pending()
    faults.decide("GET /v2/clock")
    assert not faults.scripted_pending()
