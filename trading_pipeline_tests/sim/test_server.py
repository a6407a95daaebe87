"""The simulator's HTTP API, exercised with alpaca-py's real clients (their models validate the JSON shapes)
and with plain HTTP where the SDK would hide what the server sent."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest, StockLatestQuoteRequest, StockSnapshotRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetStatus, OrderClass, OrderStatus, QueryOrderStatus
from alpaca.trading.requests import (
    GetAssetsRequest,
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)

from trading_pipeline.sim.faults import FaultConfig
from trading_pipeline.sim.server import SimBroker

try:
    from trading_pipeline_tests.sim_fixtures import (
        SESSION_START,
        TEST_KEY_ID,
        TEST_SECRET,
        running_sim,
        tradable_symbols,
        trading_headers,
    )
except ImportError:  # run from inside the tests folder
    from sim_fixtures import (  # type: ignore[no-redef]
        SESSION_START,
        TEST_KEY_ID,
        TEST_SECRET,
        running_sim,
        tradable_symbols,
        trading_headers,
    )

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


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


def get(sim: SimBroker, path: str, **kwargs: object) -> requests.Response:
    return requests.get(sim.url + path, headers=trading_headers(), timeout=5, **kwargs)  # type: ignore[arg-type]


def post(sim: SimBroker, path: str, body: object) -> requests.Response:
    return requests.post(sim.url + path, json=body, headers=trading_headers(), timeout=5)


# ---- trading API through alpaca-py ----------------------------------------------------------------------


def test_account_clock_calendar_parse_with_alpaca_models(sim: SimBroker, trading: TradingClient) -> None:
    account = trading.get_account()
    assert account.status.value == "ACTIVE" and Decimal(account.equity or "0") == Decimal("100000")
    assert Decimal(account.buying_power or "0") == Decimal("200000")
    clock = trading.get_clock()
    assert clock.is_open and clock.timestamp == SESSION_START
    assert clock.next_close == datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
    days = trading.get_calendar(GetCalendarRequest(start=date(2026, 11, 23), end=date(2026, 11, 30)))
    assert [d.date for d in days] == [date(2026, 11, d) for d in (23, 24, 25, 27, 30)]  # no Thanksgiving
    half_day = next(d for d in days if d.date == date(2026, 11, 27))
    assert (half_day.open.time().isoformat(), half_day.close.time().isoformat()) == ("09:30:00", "13:00:00")


def test_assets_are_alphabetical_and_filterable(sim: SimBroker, trading: TradingClient) -> None:
    everything = trading.get_all_assets()
    active = trading.get_all_assets(GetAssetsRequest(status=AssetStatus.ACTIVE))
    symbols = [a.symbol for a in everything]
    assert symbols == sorted(symbols) and len(symbols) == 300
    assert 0 < len(active) < len(everything) and all(a.status is AssetStatus.ACTIVE for a in active)
    assert any(not a.tradable for a in active)
    spy = trading.get_asset("SPY")
    assert spy.symbol == "SPY" and spy.tradable and spy.asset_class.value == "us_equity"
    assert trading.get_asset(spy.id).symbol == "SPY"
    raw = get(sim, "/v2/assets/SPY").json()
    assert raw["class"] == "us_equity" and UUID_RE.match(raw["id"])
    with pytest.raises(APIError) as missing:
        trading.get_asset("NOPE")
    assert missing.value.status_code == 404


def test_orders_of_every_type_and_class_round_trip(sim: SimBroker, trading: TradingClient) -> None:
    a, b, c = tradable_symbols(sim.market, 3)
    quote = sim.market.quote(a)
    assert quote is not None
    ask, bid = float(quote.ask), float(quote.bid)
    market = trading.submit_order(
        MarketOrderRequest(symbol=a, qty=10, side="buy", time_in_force="day", client_order_id="entry-a")
    )
    assert market.status is OrderStatus.NEW and market.order_class is OrderClass.SIMPLE  # answered before the fill
    assert trading.get_order_by_client_id("entry-a").status is OrderStatus.FILLED
    limit = trading.submit_order(
        LimitOrderRequest(symbol=b, qty=1, side="buy", time_in_force="gtc", limit_price=round(ask / 2, 2))
    )
    stop = trading.submit_order(
        StopOrderRequest(symbol=b, qty=1, side="buy", time_in_force="gtc", stop_price=round(ask * 2, 2))
    )
    stop_limit = trading.submit_order(
        StopLimitOrderRequest(
            symbol=b,
            qty=1,
            side="buy",
            time_in_force="gtc",
            stop_price=round(ask * 2, 2),
            limit_price=round(ask * 2.1, 2),
        )
    )
    bracket = trading.submit_order(
        LimitOrderRequest(
            symbol=c,
            qty=2,
            side="buy",
            time_in_force="gtc",
            limit_price=round(bid * 0.5, 2),
            order_class="bracket",
            take_profit=TakeProfitRequest(limit_price=round(bid * 0.7, 2)),
            stop_loss=StopLossRequest(stop_price=round(bid * 0.4, 2)),
        )
    )
    assert bracket.order_class is OrderClass.BRACKET and bracket.legs is not None
    assert [leg.status for leg in bracket.legs] == [OrderStatus.HELD, OrderStatus.HELD]
    oco = trading.submit_order(
        LimitOrderRequest(
            symbol=a,
            qty=10,
            side="sell",
            time_in_force="gtc",
            order_class="oco",
            take_profit=TakeProfitRequest(limit_price=round(ask * 1.5, 2)),
            stop_loss=StopLossRequest(stop_price=round(bid * 0.5, 2)),
        )
    )
    assert oco.order_class is OrderClass.OCO and oco.legs is not None and len(oco.legs) == 1
    oto = trading.submit_order(
        MarketOrderRequest(
            symbol=b,
            qty=1,
            side="buy",
            time_in_force="gtc",
            order_class="oto",
            stop_loss=StopLossRequest(stop_price=round(bid * 0.5, 2)),
        )
    )
    assert oto.order_class is OrderClass.OTO
    open_flat = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    open_nested = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, nested=True))
    # Nested: families by their primary order's status, so the filled OTO entry (and its working leg) is not open.
    assert {o.id for o in open_nested} == {limit.id, stop.id, stop_limit.id, bracket.id, oco.id}
    assert len(open_flat) == 3 + 3 + 2 + 1  # legs listed on their own, filled entries not open
    only_b = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, symbols=[b], nested=True))
    assert {o.symbol for o in only_b} == {b}
    closed = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED))
    assert market.id in {o.id for o in closed}
    assert len(trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=2))) == 2
    assert trading.get_order_by_id(bracket.id).legs is not None
    trading.cancel_order_by_id(limit.id)
    assert trading.get_order_by_id(limit.id).status is OrderStatus.CANCELED
    with pytest.raises(APIError) as not_cancelable:
        trading.cancel_order_by_id(limit.id)
    assert not_cancelable.value.status_code == 422


def test_order_json_has_alpaca_shapes(sim: SimBroker) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    response = post(
        sim,
        "/v2/orders",
        {
            "symbol": symbol,
            "qty": "3",
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "shape-1",
        },
    )
    assert response.status_code == 200
    order = response.json()
    assert UUID_RE.match(order["id"]) and UUID_RE.match(order["asset_id"])
    assert order["qty"] == "3" and order["filled_qty"] == "0" and order["order_class"] == ""
    assert all(RFC3339_RE.match(order[k]) for k in ("created_at", "updated_at", "submitted_at"))
    filled = get(sim, "/v2/orders:by_client_order_id", params={"client_order_id": "shape-1"}).json()
    assert filled["status"] == "filled" and isinstance(filled["filled_avg_price"], str)
    position = get(sim, f"/v2/positions/{symbol}").json()
    assert position["qty"] == "3" and isinstance(position["market_value"], str) and position["side"] == "long"


def test_positions_and_close_position(sim: SimBroker, trading: TradingClient) -> None:
    long_symbol, short_symbol = tradable_symbols(sim.market, 2)
    trading.submit_order(MarketOrderRequest(symbol=long_symbol, qty=4, side="buy", time_in_force="day"))
    trading.submit_order(MarketOrderRequest(symbol=short_symbol, qty=2, side="sell", time_in_force="day"))
    positions = {p.symbol: p for p in trading.get_all_positions()}
    assert positions[long_symbol].qty == "4" and positions[long_symbol].side.value == "long"
    assert positions[short_symbol].qty == "-2" and positions[short_symbol].side.value == "short"
    assert trading.get_open_position(long_symbol).symbol == long_symbol
    close = trading.close_position(long_symbol)
    assert close.side is not None and close.side.value == "sell" and close.qty == "4"
    missing = get(sim, f"/v2/positions/{long_symbol}")
    assert missing.status_code == 404
    assert missing.json() == {"code": 40410000, "message": "position does not exist"}
    assert (
        requests.delete(sim.url + f"/v2/positions/{long_symbol}", headers=trading_headers(), timeout=5).status_code
        == 404
    )


def test_close_position_refused_while_legs_hold_the_quantity(sim: SimBroker, trading: TradingClient) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    quote = sim.market.quote(symbol)
    assert quote is not None
    trading.submit_order(MarketOrderRequest(symbol=symbol, qty=5, side="buy", time_in_force="day"))
    trading.submit_order(
        LimitOrderRequest(
            symbol=symbol,
            qty=5,
            side="sell",
            time_in_force="gtc",
            order_class="oco",
            take_profit=TakeProfitRequest(limit_price=round(float(quote.ask) * 2, 2)),
            stop_loss=StopLossRequest(stop_price=round(float(quote.bid) / 2, 2)),
        )
    )
    response = requests.delete(sim.url + f"/v2/positions/{symbol}", headers=trading_headers(), timeout=5)
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == 40310000 and "insufficient qty available" in body["message"]
    assert body["held_for_orders"] == "5"


# ---- errors ---------------------------------------------------------------------------------------------


def test_missing_auth_is_refused(sim: SimBroker) -> None:
    for path in ("/v2/account", "/v2/stocks/quotes/latest?symbols=SPY"):
        response = requests.get(sim.url + path, timeout=5)
        assert response.status_code == 401
        assert "not authorized" in response.text or "unauthorized" in response.text
    half = requests.get(sim.url + "/v2/account", headers={"APCA-API-KEY-ID": "x"}, timeout=5)
    assert half.status_code == 401 and half.json()["code"] == 40110000


def test_bad_order_requests_get_alpaca_errors(sim: SimBroker) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    malformed = requests.post(sim.url + "/v2/orders", data=b"{not json", headers=trading_headers(), timeout=5)
    assert malformed.status_code == 400 and malformed.json()["message"] == "request body format is invalid"
    base = {"symbol": symbol, "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}
    for change, message in [
        ({"qty": "0"}, "qty must be > 0"),
        ({"qty": -2}, "qty must be > 0"),
        ({"side": "long"}, "invalid side"),
        ({"type": "moon"}, "invalid type"),
        ({"time_in_force": "forever"}, "invalid time_in_force"),
        ({"qty": "abc"}, "invalid qty"),
    ]:
        response = post(sim, "/v2/orders", {**base, **change})
        assert response.status_code == 422, change
        assert response.json()["code"] == 40010001 and message in response.json()["message"]
    assert post(sim, "/v2/orders", {**base, "client_order_id": "dup"}).status_code == 200
    duplicate = post(sim, "/v2/orders", {**base, "client_order_id": "dup"})
    assert duplicate.status_code == 422
    assert duplicate.json() == {"code": 40010001, "message": "client_order_id must be unique"}
    unknown_order = get(sim, f"/v2/orders/{uuid.uuid4()}")
    assert unknown_order.status_code == 404 and unknown_order.json()["code"] == 40410000
    assert get(sim, "/v2/orders:by_client_order_id", params={"client_order_id": "never"}).status_code == 404


# ---- market data ----------------------------------------------------------------------------------------


def test_latest_quotes_many_symbols_unknown_omitted_malformed_fails_all(
    sim: SimBroker, data: StockHistoricalDataClient
) -> None:
    symbols = sim.market.symbols[:50]
    quotes = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=[*symbols, "QQQQQ"], feed="iex"))
    assert set(quotes) == set(symbols)  # the unknown symbol is simply absent
    for symbol, quote in quotes.items():
        assert 0 < quote.bid_price < quote.ask_price and quote.timestamp.tzinfo is not None
        expected = sim.market.quote(symbol)
        assert expected is not None and Decimal(str(quote.ask_price)) == expected.ask
    raw = get(sim, "/v2/stocks/quotes/latest", params={"symbols": "SPY"}).json()["quotes"]["SPY"]
    assert set(raw) >= {"ap", "as", "bp", "bs", "t"} and isinstance(raw["ap"], float | int)
    with pytest.raises(APIError) as bad:
        data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=["SPY", "sp y!"]))
    assert bad.value.status_code == 400
    assert "code" not in json.loads(str(bad.value))  # data API errors carry no code


def test_snapshots(sim: SimBroker, data: StockHistoricalDataClient) -> None:
    snapshots = data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols=["SPY", "NOPEX"]))
    assert set(snapshots) == {"SPY"}
    spy = snapshots["SPY"]
    assert spy.latest_quote is not None and spy.daily_bar is not None and spy.previous_daily_bar is not None
    assert spy.daily_bar.timestamp > spy.previous_daily_bar.timestamp


def test_bars_paginate_with_a_limit_counted_across_symbols(sim: SimBroker, data: StockHistoricalDataClient) -> None:
    symbols = sorted(sim.market.symbols[:3])
    params = {
        "symbols": ",".join(symbols),
        "timeframe": "1Day",
        "start": "2026-10-26",
        "end": "2026-11-20",
        "limit": "7",
    }
    pages = []
    token = None
    while True:
        response = get(sim, "/v2/stocks/bars", params={**params, **({"page_token": token} if token else {})})
        assert response.status_code == 200
        page = response.json()
        pages.append(page)
        assert sum(len(v) for v in page["bars"].values()) <= 7
        token = page["next_page_token"]
        if token is None:
            break
    total = sum(len(v) for page in pages for v in page["bars"].values())
    assert total == 3 * 20 and len(pages) == 9  # 20 sessions each, 7 bars per page
    via_sdk = data.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols=symbols,
            timeframe=TimeFrame.Day,
            start=datetime(2026, 10, 26, 4, tzinfo=UTC),
            end=datetime(2026, 11, 20, 5, tzinfo=UTC),
            limit=45,
        )
    )
    assert sum(len(v) for v in via_sdk.data.values()) == 45
    assert sim.requests("GET /v2/stocks/bars") == 9 + 1  # the SDK asked for 45 in one page


def test_bars_for_many_symbols_follow_next_page_token(sim: SimBroker, data: StockHistoricalDataClient) -> None:
    symbols = sim.market.symbols
    sessions = len(sim.market.sessions.indices_between(date(2026, 9, 28), date(2026, 11, 23)))
    assert 300 * sessions > 10_000  # more than one page of the SDK's 10,000-bar requests
    bars = data.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols=symbols,
            timeframe=TimeFrame.Day,
            start=datetime(2026, 9, 28, tzinfo=UTC),
            end=datetime(2026, 11, 23, 23, tzinfo=UTC),
        )
    )
    assert len(bars.data) == 300 and {len(v) for v in bars.data.values()} == {sessions}
    assert sim.requests("GET /v2/stocks/bars") == 2
    new_york = ZoneInfo("America/New_York")
    assert all(b.timestamp.astimezone(new_york).time() == time_of_day(0) for b in bars.data["SPY"])


# ---- admin routes and faults ----------------------------------------------------------------------------


def test_admin_routes_drive_clock_scenarios_and_faults(sim: SimBroker) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    moved = requests.post(sim.url + "/_sim/clock", json={"advance_seconds": 3600}, timeout=5).json()
    assert moved["timestamp_utc"].startswith("2026-11-24T16:00:00")
    gapped = requests.post(
        sim.url + "/_sim/scenario",
        json={"kind": "set_price", "symbol": symbol, "bid": "10.00", "ask": "10.02"},
        timeout=5,
    ).json()
    assert gapped["quote"]["bp"] == 10 and gapped["quote"]["ap"] == 10.02
    requests.post(sim.url + "/_sim/scenario", json={"kind": "gap", "symbol": symbol, "pct": -10}, timeout=5)
    quote = sim.market.quote(symbol)
    assert quote is not None and quote.bid < Decimal("9.05")
    bad = requests.post(sim.url + "/_sim/scenario", json={"kind": "explode", "symbol": symbol}, timeout=5)
    assert bad.status_code == 422
    configured = requests.post(
        sim.url + "/_sim/faults", json={"rate_500": 1.0, "reset_counters": True}, timeout=5
    ).json()
    assert configured["config"]["rate_500"] == 1.0
    assert get(sim, "/v2/clock").status_code == 500
    counters = requests.get(sim.url + "/_sim/counters", timeout=5).json()  # admin is exempt from faults
    assert counters["requests"]["GET /v2/clock"] == 1 and counters["faults"] == {"500 GET /v2/clock": 1}
    requests.post(sim.url + "/_sim/faults", json={"clear": True}, timeout=5)
    assert get(sim, "/v2/clock").status_code == 200
    requests.delete(sim.url + "/_sim/counters", timeout=5)
    assert sim.counters()["requests"] == {}


def test_fault_kinds_as_a_client_sees_them(sim: SimBroker) -> None:
    # timeout_seconds far beyond the client's: the client's own timeout decides, and stop() wakes the hang.
    sim.faults.configure(retry_after_seconds=7, timeout_seconds=60.0)
    sim.faults.fail_next("429")
    limited = get(sim, "/v2/account")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()["code"] == 42910000
    sim.faults.fail_next("503")
    unavailable = get(sim, "/v2/account")
    assert unavailable.status_code == 503
    with pytest.raises(ValueError):
        unavailable.json()  # a proxy's text, not JSON
    sim.faults.fail_next("timeout")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(sim.url + "/v2/account", headers=trading_headers(), timeout=0.3)
    symbol = tradable_symbols(sim.market, 1)[0]
    sim.faults.fail_next("drop", route="POST /v2/orders")
    with pytest.raises(requests.exceptions.ConnectionError):
        post(
            sim,
            "/v2/orders",
            {
                "symbol": symbol,
                "qty": 1,
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
                "client_order_id": "dropped",
            },
        )
    assert get(sim, "/v2/orders:by_client_order_id", params={"client_order_id": "dropped"}).status_code == 200
    sim.faults.fail_next("drop_502", route="POST /v2/orders")
    empty = post(
        sim,
        "/v2/orders",
        {
            "symbol": symbol,
            "qty": 1,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "empty-502",
        },
    )
    assert empty.status_code == 502 and empty.content == b""
    assert sim.market.book.order_by_client_id("empty-502").status == "filled"
    sim.faults.fail_next("504", route="POST /v2/orders")
    gateway = post(
        sim,
        "/v2/orders",
        {
            "symbol": symbol,
            "qty": 1,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "behind-504",
        },
    )
    assert gateway.status_code == 504 and gateway.headers["Content-Type"] == "text/html"
    assert sim.market.book.order_by_client_id("behind-504").status == "filled"  # processed behind the gateway
    assert sim.counters()["faults_by_kind"] == {
        "429": 1,
        "503": 1,
        "timeout": 1,
        "drop": 1,
        "drop_502": 1,
        "504": 1,
    }


def test_a_timeout_ends_with_the_connection_closed_unanswered(sim: SimBroker) -> None:
    sim.faults.configure(timeout_seconds=0)  # the hang is over at once: what follows is the hang-up
    sim.faults.fail_next("timeout")
    with pytest.raises(requests.exceptions.ConnectionError) as hung_up:
        requests.get(sim.url + "/v2/account", headers=trading_headers(), timeout=30)
    assert "RemoteDisconnected" in str(hung_up.value) or "reset" in str(hung_up.value).lower()
    assert sim.requests("GET /v2/account") == 1
    assert get(sim, "/v2/account").status_code == 200  # the next connection is served


def test_a_dropped_order_is_a_connection_error_for_alpaca_py_and_exists(sim: SimBroker, trading: TradingClient) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    sim.faults.fail_next("drop", route="POST /v2/orders")
    with pytest.raises(requests.exceptions.ConnectionError) as dropped:  # not a ChunkedEncodingError: no bytes
        trading.submit_order(
            MarketOrderRequest(symbol=symbol, qty=2, side="buy", time_in_force="day", client_order_id="lost-answer")
        )
    assert "RemoteDisconnected" in str(dropped.value) or "reset" in str(dropped.value).lower()
    assert sim.requests("POST /v2/orders") == 1  # alpaca-py's own retry (429/504 only) did not fire
    assert trading.get_order_by_client_id("lost-answer").status is OrderStatus.FILLED


def test_latency_is_added_to_every_request_but_the_admin_routes(sim: SimBroker) -> None:
    # A latency ten times the client's timeout: the client sees a timeout instead of measuring seconds.
    sim.faults.configure(latency_ms=3000)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(sim.url + "/v2/clock", headers=trading_headers(), timeout=0.3)
    assert sim.requests("GET /v2/clock") == 1
    assert requests.get(sim.url + "/_sim/clock", timeout=5).status_code == 200  # exempt_admin: no latency
    sim.faults.configure(latency_ms=0)
    assert get(sim, "/v2/clock").status_code == 200


def test_an_order_held_by_latency_lands_even_when_its_client_has_given_up(sim: SimBroker) -> None:
    """The body is read before the latency, as a server reads it: the crash-recovery tests kill a client while
    its close order is held, and the order must still land (the ambiguous submit they recover from)."""
    symbol = tradable_symbols(sim.market, 1)[0]
    sim.faults.configure(latency_ms=1000)
    order = {"symbol": symbol, "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            sim.url + "/v2/orders", json={**order, "client_order_id": "held"}, headers=trading_headers(), timeout=0.1
        )

    def landed() -> bool:
        with sim.market.lock:
            return any(o.client_order_id == "held" for o in sim.market.book.orders.values())

    deadline = time.monotonic() + 30  # waits for the event, not for a duration
    while not landed():
        assert time.monotonic() < deadline, "the held order never landed"
        time.sleep(0.02)
    assert sim.market.book.order_by_client_id("held").status == "filled"


def test_random_faults_are_reproducible_for_a_seed() -> None:
    def sequence() -> list[int]:
        with running_sim(n_symbols=50, faults=FaultConfig(seed=3, rate_429=0.2, rate_500=0.2)) as sim:
            return [get(sim, "/v2/clock").status_code for _ in range(30)]

    first = sequence()
    assert first == sequence()
    assert {200, 429, 500} <= set(first)


def test_realtime_clock_fills_a_queued_stop_at_the_open_without_any_client() -> None:
    start = datetime(2026, 11, 24, 14, 29, 50, tzinfo=UTC)  # ten seconds before the open
    with SimBroker(seed=7, n_symbols=50, start=start, realtime=True, speed=20.0, tick_seconds=0.05) as sim:
        symbol = tradable_symbols(sim.market, 1)[0]
        sim.market.submit_order(
            {
                "symbol": symbol,
                "qty": 3,
                "side": "sell",
                "type": "market",
                "time_in_force": "day",
                "client_order_id": "short-at-open",
            }
        )
        quote = sim.market.quote(symbol)
        assert quote is not None
        stop = sim.market.submit_order(
            {
                "symbol": symbol,
                "qty": 1,
                "side": "buy",
                "type": "stop",
                "stop_price": str(quote.ask / 2),
                "time_in_force": "day",
            }
        )
        assert stop.status == "accepted"
        # Waits for the ticker, not for a duration: 10 simulated seconds are 0.5 s of wall time at x20.
        deadline = time.monotonic() + 30
        while stop.status != "filled" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stop.status == "filled" and sim.market.now >= datetime(2026, 11, 24, 14, 30, tzinfo=UTC)


def test_serve_prints_how_to_connect_and_stops_on_ctrl_c() -> None:
    code = "from trading_pipeline.sim.server import serve; serve(port=0, seed=3, n_symbols=50)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", first)
        assert match, first
        lines = [process.stdout.readline() for _ in range(8)]
        assert any("ALPACA_TRADING_URL=" + match.group(1) in line for line in lines)
        assert any("TRADING_PIPELINE_BROKER=alpaca" in line for line in lines)
        response = requests.get(match.group(1) + "/v2/clock", headers=trading_headers(), timeout=5)
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_stop_does_not_wait_for_a_request_hanging_in_a_fault() -> None:
    sim = SimBroker(
        seed=7, n_symbols=50, start=SESSION_START, faults=FaultConfig(rate_timeout=1.0, timeout_seconds=600)
    )
    sim.start()
    outcome: list[BaseException | int] = []

    def hanging_client() -> None:
        try:
            outcome.append(requests.get(sim.url + "/v2/clock", headers=trading_headers(), timeout=60).status_code)
        except requests.exceptions.RequestException as exc:
            outcome.append(exc)

    client = threading.Thread(target=hanging_client)
    try:
        client.start()
        while sim.requests("GET /v2/clock") == 0 and client.is_alive():  # the request is in, hanging
            time.sleep(0.01)
    finally:
        sim.stop()
    client.join(timeout=60)
    # stop() woke the 600 s hang: the client saw the connection close, long before its own 60 s timeout.
    assert not client.is_alive() and len(outcome) == 1
    assert isinstance(outcome[0], requests.exceptions.ConnectionError), outcome
    assert not isinstance(outcome[0], requests.exceptions.Timeout), outcome
    assert timedelta(0) <= sim.market.now - SESSION_START < timedelta(seconds=1)
