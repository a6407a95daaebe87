"""What Alpaca refuses or holds back for reasons outside the order itself, each through alpaca-py (issue 24):
pattern-day-trader protection, assets Alpaca does not trade, market orders sent while the market is closed
(and `opg`), and trading halts. The sources are quoted in `sim/day_trades.py`, `sim/scenarios.py`,
`sim/order_rules.py` and `sim/orders.py`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockLatestQuoteRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from trading_pipeline.sim.server import SimBroker

try:
    from trading_pipeline_tests.sim_fixtures import TEST_KEY_ID, TEST_SECRET, running_sim, tradable_symbols
except ImportError:  # run from inside the tests folder
    from sim_fixtures import TEST_KEY_ID, TEST_SECRET, running_sim, tradable_symbols  # type: ignore[no-redef]

NEW_YORK = ZoneInfo("America/New_York")
PDT_REFUSAL = {"code": 40310100, "message": "trade denied due to pattern day trading protection"}


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim() as running:
        yield running


@pytest.fixture
def trading(sim: SimBroker) -> TradingClient:
    return TradingClient(TEST_KEY_ID, TEST_SECRET, paper=True, url_override=sim.url)


def admin(sim: SimBroker, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(sim.url + path, json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def submit(
    trading: TradingClient, symbol: str, qty: float, side: OrderSide, tif: TimeInForce = TimeInForce.DAY
) -> Order:
    order = trading.submit_order(MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=tif))
    assert isinstance(order, Order)
    return order


def refused(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(APIError) as caught:
        call()
    return caught.value.status_code, json.loads(str(caught.value))


def status_of(trading: TradingClient, order: Order) -> Order:
    found = trading.get_order_by_id(str(order.id))
    assert isinstance(found, Order)
    return found


# ---- pattern day trader ---------------------------------------------------------------------------------


def test_a_pdt_flagged_account_cannot_exit_a_position_opened_the_same_day(
    sim: SimBroker, trading: TradingClient
) -> None:
    today, earlier = tradable_symbols(sim.market, 2)
    submit(trading, earlier, 5, OrderSide.BUY)
    sim.market.advance_to(sim.market.clock().next_open + timedelta(minutes=1))  # the next session
    submit(trading, today, 10, OrderSide.BUY)
    assert trading.get_account().pattern_day_trader is False
    assert admin(sim, "/_sim/account", {"pattern_day_trader": True})["pattern_day_trader"] is True
    assert trading.get_account().pattern_day_trader is True
    status, body = refused(lambda: submit(trading, today, 10, OrderSide.SELL))
    assert (status, body) == (403, PDT_REFUSAL)
    status, body = refused(lambda: trading.close_position(today))
    assert (status, body) == (403, PDT_REFUSAL)
    submit(trading, today, 1, OrderSide.BUY)  # adding to the position is no exit
    assert status_of(trading, submit(trading, earlier, 5, OrderSide.SELL)).status == OrderStatus.FILLED
    sim.market.advance_to(sim.market.clock().next_open + timedelta(minutes=1))
    assert status_of(trading, submit(trading, today, 11, OrderSide.SELL)).status == OrderStatus.FILLED  # next day
    sim.market.set_pattern_day_trader(False)
    assert trading.get_account().pattern_day_trader is False


def test_without_the_flag_a_day_trade_goes_through(sim: SimBroker, trading: TradingClient) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    submit(trading, symbol, 3, OrderSide.BUY)
    assert status_of(trading, submit(trading, symbol, 3, OrderSide.SELL)).status == OrderStatus.FILLED


# ---- assets Alpaca does not trade -----------------------------------------------------------------------


def test_an_asset_marked_not_tradable_is_listed_so_and_refused(sim: SimBroker, trading: TradingClient) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    assert trading.get_asset(symbol).tradable is True
    admin(sim, "/_sim/scenario", {"kind": "tradable", "symbol": symbol, "tradable": False})
    assert trading.get_asset(symbol).tradable is False
    status, body = refused(lambda: submit(trading, symbol, 1, OrderSide.BUY))
    assert (status, body) == (422, {"code": 42210000, "message": f"asset {symbol} is not tradable"})
    sim.market.set_tradable(symbol, True)
    assert trading.get_asset(symbol).tradable is True
    assert status_of(trading, submit(trading, symbol, 1, OrderSide.BUY)).status == OrderStatus.FILLED


# ---- the market is closed -------------------------------------------------------------------------------


def test_a_market_day_order_sent_after_the_close_is_queued_and_fills_at_the_next_open(
    sim: SimBroker, trading: TradingClient
) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    next_open = sim.market.clock().next_open
    sim.market.advance_to(sim.market.clock().next_close + timedelta(hours=1))
    order = submit(trading, symbol, 4, OrderSide.BUY)
    assert order.status == OrderStatus.ACCEPTED and order.filled_qty == "0"
    sim.market.advance_to(next_open - timedelta(minutes=1))
    assert status_of(trading, order).status == OrderStatus.ACCEPTED
    assert symbol not in {p.symbol for p in trading.get_all_positions()}
    sim.market.advance_to(next_open)
    filled = status_of(trading, order)
    assert filled.status == OrderStatus.FILLED and filled.filled_at == next_open
    assert trading.get_open_position(symbol).qty == "4"


def test_opg_orders_are_queued_for_the_opening_and_the_unfilled_rest_is_canceled(
    sim: SimBroker, trading: TradingClient
) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    quote = sim.market.quote(symbol)
    assert quote is not None
    next_open = sim.market.clock().next_open
    evening = datetime.combine(sim.market.now.astimezone(NEW_YORK).date(), datetime.min.time(), NEW_YORK)
    sim.market.advance_to((evening + timedelta(hours=17)).astimezone(UTC))  # 17:00 ET: opg is refused
    status, _ = refused(lambda: submit(trading, symbol, 2, OrderSide.BUY, TimeInForce.OPG))
    assert status == 422
    sim.market.advance_to((evening + timedelta(hours=20)).astimezone(UTC))  # 20:00 ET: queued for the open
    moo = submit(trading, symbol, 2, OrderSide.BUY, TimeInForce.OPG)
    loo = trading.submit_order(
        LimitOrderRequest(
            symbol=symbol,
            qty=2,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.OPG,
            limit_price=round(float(quote.bid) * 0.5, 2),
        )
    )
    assert isinstance(loo, Order) and moo.status == OrderStatus.ACCEPTED and loo.status == OrderStatus.ACCEPTED
    sim.market.advance_to(next_open + timedelta(minutes=1))
    opened = status_of(trading, moo)
    assert opened.status == OrderStatus.FILLED and opened.filled_at == next_open
    assert status_of(trading, loo).status == OrderStatus.CANCELED


# ---- halts ----------------------------------------------------------------------------------------------


def test_a_halted_symbol_freezes_its_quote_and_fills_nothing_until_resumed(
    sim: SimBroker, trading: TradingClient
) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    data = StockHistoricalDataClient(TEST_KEY_ID, TEST_SECRET, url_override=sim.url)
    latest = StockLatestQuoteRequest(symbol_or_symbols=symbol, feed=DataFeed.IEX)
    submit(trading, symbol, 10, OrderSide.BUY)
    admin(sim, "/_sim/scenario", {"kind": "halt", "symbol": symbol})
    frozen = data.get_stock_latest_quote(latest)[symbol]
    sim.market.advance(timedelta(minutes=30))
    later = data.get_stock_latest_quote(latest)[symbol]
    assert (later.timestamp, later.bid_price, later.ask_price) == (frozen.timestamp, frozen.bid_price, frozen.ask_price)
    assert trading.get_asset(symbol).tradable is True
    sell = submit(trading, symbol, 10, OrderSide.SELL)
    assert sell.status == OrderStatus.NEW
    sim.market.advance(timedelta(minutes=30))
    assert status_of(trading, sell).status == OrderStatus.NEW and status_of(trading, sell).filled_qty == "0"
    admin(sim, "/_sim/scenario", {"kind": "resume", "symbol": symbol})
    sim.market.advance(timedelta(minutes=1))
    assert status_of(trading, sell).status == OrderStatus.FILLED
    assert data.get_stock_latest_quote(latest)[symbol].timestamp > frozen.timestamp
