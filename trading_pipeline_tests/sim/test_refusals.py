"""The sim refuses what Alpaca refuses for entries, and answers the listing details Alpaca documents (issue 17),
each seen through alpaca-py's real clients. The sources are quoted in the sim's docstrings (`order_rules.py`,
`order_checks.py`, `data_routes.py`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest, StockLatestQuoteRequest, StockSnapshotRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)

from trading_pipeline.sim.server import SimBroker

try:
    from trading_pipeline_tests.sim_fixtures import TEST_KEY_ID, TEST_SECRET, running_sim, trading_headers
except ImportError:  # run from inside the tests folder
    from sim_fixtures import TEST_KEY_ID, TEST_SECRET, running_sim, trading_headers  # type: ignore[no-redef]


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim() as running:
        yield running


@pytest.fixture
def trading(sim: SimBroker) -> TradingClient:
    return TradingClient(TEST_KEY_ID, TEST_SECRET, paper=True, url_override=sim.url)


@pytest.fixture
def data(sim: SimBroker) -> StockHistoricalDataClient:
    return StockHistoricalDataClient(TEST_KEY_ID, TEST_SECRET, url_override=sim.url)


def refusal(trading: TradingClient, request: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(APIError) as refused:
        trading.submit_order(request)
    return refused.value.status_code, json.loads(str(refused.value))


def symbol_where(sim: SimBroker, *, fractionable: bool) -> str:
    return next(
        a.symbol
        for a in sim.market.assets
        if a.status == "active"
        and a.tradable
        and a.shortable
        and a.fractionable is fractionable
        and a.symbol != "SPY"
        and sim.market.quote(a.symbol) is not None
    )


def touch(sim: SimBroker, symbol: str) -> tuple[Decimal, Decimal]:
    quote = sim.market.quote(symbol)
    assert quote is not None
    return quote.bid, quote.ask


def buying_power(trading: TradingClient) -> Decimal:
    return Decimal(trading.get_account().buying_power or "0")


# ---- buying power ---------------------------------------------------------------------------------------


def test_an_open_buy_order_holds_buying_power_until_it_is_canceled(sim: SimBroker, trading: TradingClient) -> None:
    symbol = symbol_where(sim, fractionable=True)
    bid, _ = touch(sim, symbol)
    limit = (bid / 2).quantize(Decimal("0.01"))
    qty = int(Decimal(150_000) / limit)
    start = buying_power(trading)
    resting = trading.submit_order(
        LimitOrderRequest(symbol=symbol, qty=qty, side="buy", time_in_force="gtc", limit_price=float(limit))
    )
    assert trading.get_order_by_id(resting.id).status is OrderStatus.NEW  # far below the market: it rests
    assert buying_power(trading) == start - qty * limit
    second = LimitOrderRequest(symbol=symbol, qty=qty // 2, side="buy", time_in_force="gtc", limit_price=float(limit))
    status, body = refusal(trading, second)
    assert status == 403 and body["code"] == 40310000 and body["message"] == "insufficient buying power"
    assert Decimal(body["buying_power"]) == start - qty * limit
    assert Decimal(body["cost_basis"]) == (qty // 2) * limit
    trading.cancel_order_by_id(resting.id)
    assert buying_power(trading) == start
    assert trading.submit_order(second).status is OrderStatus.NEW


def test_a_market_buy_is_valued_above_the_ask(sim: SimBroker, trading: TradingClient) -> None:
    """The orders guide: a market buy's "limit price is 2.5% to 4% above the current market price"."""
    symbol = symbol_where(sim, fractionable=True)
    _, ask = touch(sim, symbol)
    qty = int(buying_power(trading) / (ask * Decimal("1.01")))  # affordable at the ask, not at ask + 2.5%
    status, body = refusal(trading, MarketOrderRequest(symbol=symbol, qty=qty, side="buy", time_in_force="day"))
    assert status == 403 and body["message"] == "insufficient buying power"
    affordable = int(buying_power(trading) / (ask * Decimal("1.03")))
    assert trading.submit_order(MarketOrderRequest(symbol=symbol, qty=affordable, side="buy", time_in_force="day"))


def test_a_queued_market_buy_holds_buying_power_and_a_sell_of_a_long_does_not(
    sim: SimBroker, trading: TradingClient
) -> None:
    symbol = symbol_where(sim, fractionable=True)
    trading.submit_order(MarketOrderRequest(symbol=symbol, qty=10, side="buy", time_in_force="day"))
    assert trading.get_open_position(symbol).qty == "10"
    after_fill = buying_power(trading)
    _, ask = touch(sim, symbol)
    trading.submit_order(
        LimitOrderRequest(symbol=symbol, qty=10, side="sell", time_in_force="gtc", limit_price=float(ask * 2))
    )
    assert buying_power(trading) == after_fill  # an exit neither holds nor frees buying power before it fills
    sim.market.advance_to(sim.market.day_order_expiry() + timedelta(minutes=5))  # after the close: queued
    queued = trading.submit_order(MarketOrderRequest(symbol=symbol, qty=5, side="buy", time_in_force="day"))
    assert queued.status is OrderStatus.ACCEPTED
    assert buying_power(trading) < after_fill


# ---- fractional and notional ----------------------------------------------------------------------------


def test_fractional_orders_are_day_simple_market_orders_on_fractionable_assets(
    sim: SimBroker, trading: TradingClient
) -> None:
    symbol = symbol_where(sim, fractionable=True)
    whole_only = symbol_where(sim, fractionable=False)
    bid, ask = touch(sim, symbol)
    cases = [
        (MarketOrderRequest(symbol=whole_only, qty=1.5, side="buy", time_in_force="day"), "not fractionable"),
        (MarketOrderRequest(symbol=symbol, qty=1.5, side="buy", time_in_force="gtc"), "must be DAY orders"),
        (
            LimitOrderRequest(symbol=symbol, qty=1.5, side="buy", time_in_force="day", limit_price=float(bid)),
            "must be market orders",
        ),
        (
            MarketOrderRequest(
                symbol=symbol,
                qty=1.5,
                side="buy",
                time_in_force="day",
                order_class=OrderClass.BRACKET,
                take_profit=TakeProfitRequest(limit_price=float(ask * 2)),
                stop_loss=StopLossRequest(stop_price=float(bid / 2)),
            ),
            "must be simple orders",
        ),
        (MarketOrderRequest(symbol=symbol, qty=1.5, side="sell", time_in_force="day"), "cannot be sold short"),
    ]
    for request, message in cases:
        status, body = refusal(trading, request)
        assert (status, body["code"]) == (422, 42210000), message
        assert message in body["message"]
    accepted = trading.submit_order(MarketOrderRequest(symbol=symbol, qty=1.5, side="buy", time_in_force="day"))
    assert trading.get_order_by_id(accepted.id).filled_qty == "1.5"


def test_notional_orders_follow_the_fractional_rules_and_qty_excludes_notional(
    sim: SimBroker, trading: TradingClient
) -> None:
    symbol = symbol_where(sim, fractionable=True)
    bid, _ = touch(sim, symbol)
    gtc = MarketOrderRequest(symbol=symbol, notional=100, side="buy", time_in_force="gtc")
    limit = LimitOrderRequest(symbol=symbol, notional=100, side="buy", time_in_force="day", limit_price=float(bid))
    assert refusal(trading, gtc) == (422, {"code": 42210000, "message": "fractional orders must be DAY orders"})
    assert refusal(trading, limit) == (422, {"code": 42210000, "message": "fractional orders must be market orders"})
    base = {"symbol": symbol, "side": "buy", "type": "market", "time_in_force": "day"}
    both = requests.post(
        sim.url + "/v2/orders", json={**base, "qty": "1", "notional": "100"}, headers=trading_headers()
    )
    assert both.status_code == 400  # alpaca-py refuses this before sending; the fractional guide says 400
    neither = requests.post(sim.url + "/v2/orders", json=base, headers=trading_headers())
    assert neither.status_code == 422 and neither.json()["message"] == "qty or notional is required"
    too_fine = requests.post(sim.url + "/v2/orders", json={**base, "qty": "0.1234567891"}, headers=trading_headers())
    assert too_fine.status_code == 422 and "9 decimal places" in too_fine.json()["message"]
    # What Alpaca would take, the sim says it does not model (its own code, not Alpaca's 42210000).
    valid = MarketOrderRequest(symbol=symbol, notional=100, side="buy", time_in_force="day")
    status, body = refusal(trading, valid)
    assert status == 422 and body["code"] == 40010001 and "not supported by the simulator" in body["message"]


# ---- extended hours and time in force -------------------------------------------------------------------


def test_extended_hours_only_with_limit_day_orders(sim: SimBroker, trading: TradingClient) -> None:
    symbol = symbol_where(sim, fractionable=True)
    bid, ask = touch(sim, symbol)
    price = float(bid)
    for request in (
        MarketOrderRequest(symbol=symbol, qty=1, side="buy", time_in_force="day", extended_hours=True),
        LimitOrderRequest(
            symbol=symbol, qty=1, side="buy", time_in_force="gtc", limit_price=price, extended_hours=True
        ),
        StopOrderRequest(symbol=symbol, qty=1, side="buy", time_in_force="day", stop_price=price, extended_hours=True),
    ):
        assert refusal(trading, request) == (
            422,
            {"code": 42210000, "message": "extended hours order must be DAY limit orders"},
        )
    bracket = LimitOrderRequest(
        symbol=symbol,
        qty=1,
        side="buy",
        time_in_force="day",
        limit_price=price,
        extended_hours=True,
        order_class=OrderClass.BRACKET,
        take_profit=TakeProfitRequest(limit_price=float(ask * 2)),
        stop_loss=StopLossRequest(stop_price=float(bid / 2)),
    )
    status, body = refusal(trading, bracket)
    assert (status, body["code"]) == (422, 42210000) and "not supported for bracket orders" in body["message"]


def test_the_documented_time_in_force_combinations(sim: SimBroker, trading: TradingClient) -> None:
    """10:00 New York: after the 09:28 cutoff for opg, before the 15:50 one for cls."""
    symbol = symbol_where(sim, fractionable=True)
    bid, ask = touch(sim, symbol)
    stop_opg = StopOrderRequest(symbol=symbol, qty=1, side="buy", time_in_force="opg", stop_price=float(ask * 2))
    assert refusal(trading, stop_opg) == (
        422,
        {"code": 42210000, "message": "opg orders must be market or limit orders"},
    )
    late_opg = MarketOrderRequest(symbol=symbol, qty=1, side="buy", time_in_force=TimeInForce.OPG)
    status, body = refusal(trading, late_opg)
    assert (status, body["code"]) == (422, 42210000) and "between 09:28 and 19:00 ET" in body["message"]
    for tif in (TimeInForce.IOC, TimeInForce.FOK, TimeInForce.OPG):
        bracket = MarketOrderRequest(
            symbol=symbol,
            qty=1,
            side="buy",
            time_in_force=tif,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=float(ask * 2)),
            stop_loss=StopLossRequest(stop_price=float(bid / 2)),
        )
        assert refusal(trading, bracket) == (
            422,
            {"code": 42210000, "message": "bracket orders must be day or gtc orders"},
        )
    # cls at 10:00 passes Alpaca's rules; the sim does not run auctions and says so in its own words.
    status, body = refusal(trading, MarketOrderRequest(symbol=symbol, qty=1, side="buy", time_in_force="cls"))
    assert (status, body["code"]) == (422, 40010001) and "not supported by the simulator" in body["message"]


# ---- listing details ------------------------------------------------------------------------------------


def test_order_listing_after_and_until_are_exclusive(sim: SimBroker, trading: TradingClient) -> None:
    symbol = symbol_where(sim, fractionable=True)
    first = trading.submit_order(MarketOrderRequest(symbol=symbol, qty=1, side="buy", time_in_force="day"))
    sim.market.advance(timedelta(minutes=1))
    second = trading.submit_order(MarketOrderRequest(symbol=symbol, qty=1, side="buy", time_in_force="day"))
    assert first.submitted_at is not None and second.submitted_at is not None

    def listed(**window: Any) -> list[str]:
        orders = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, **window))
        return [str(o.id) for o in orders]  # type: ignore[union-attr]

    assert listed(until=second.submitted_at) == [str(first.id)]
    assert listed(after=first.submitted_at) == [str(second.id)]
    assert listed(after=first.submitted_at, until=second.submitted_at) == []


def test_an_open_position_is_found_by_its_asset_id(sim: SimBroker, trading: TradingClient) -> None:
    symbol = symbol_where(sim, fractionable=True)
    trading.submit_order(MarketOrderRequest(symbol=symbol, qty=3, side=OrderSide.BUY, time_in_force="day"))
    asset_id = trading.get_asset(symbol).id
    position = trading.get_open_position(asset_id)
    assert position.symbol == symbol and position.asset_id == asset_id and position.qty == "3"
    with pytest.raises(APIError) as missing:
        trading.get_open_position(trading.get_asset(symbol_where(sim, fractionable=False)).id)
    assert missing.value.status_code == 404


# ---- the data API's feeds -------------------------------------------------------------------------------

SIP_REFUSAL = {"message": "subscription does not permit querying recent SIP data"}


def test_a_feed_the_plan_lacks_is_the_data_apis_403(sim: SimBroker, data: StockHistoricalDataClient) -> None:
    for call in (
        lambda: data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="SPY", feed=DataFeed.SIP)),
        lambda: data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols="SPY", feed=DataFeed.SIP)),
        lambda: data.get_stock_bars(StockBarsRequest(symbol_or_symbols="SPY", timeframe=TimeFrame.Day, feed="sip")),
    ):
        with pytest.raises(APIError) as refused:
            call()
        assert refused.value.status_code == 403 and json.loads(str(refused.value)) == SIP_REFUSAL
    now = sim.market.now
    history = StockBarsRequest(
        symbol_or_symbols="SPY", timeframe=TimeFrame.Day, start=now - timedelta(days=10), end=now - timedelta(days=1)
    )
    history.feed = DataFeed.SIP
    assert data.get_stock_bars(history).data["SPY"]  # older than 15 minutes: on every plan
    assert data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="SPY", feed=DataFeed.IEX))


def test_a_plan_with_sip_gets_sip() -> None:
    with running_sim(data_feeds=("iex", "sip")) as sim:
        data = StockHistoricalDataClient(TEST_KEY_ID, TEST_SECRET, url_override=sim.url)
        quotes = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="SPY", feed=DataFeed.SIP))
        assert set(quotes) == {"SPY"}
