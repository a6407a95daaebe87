"""AlpacaBroker against the local sim broker: every Broker method through alpaca-py's real clients."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.requests import StockLatestQuoteRequest

from trading_pipeline.broker.alpaca import AlpacaBroker
from trading_pipeline.broker.base import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    ConfigurationError,
    NotFound,
    OrderClass,
    OrderRejected,
    OrderRequest,
    OrderType,
    TimeInForce,
)
from trading_pipeline.broker.sdk import error_details
from trading_pipeline.domain.types import OrderSide, PositionSide
from trading_pipeline.settings import Settings, SettingsError
from trading_pipeline.sim.server import SimBroker

try:
    from trading_pipeline_tests.sim_fixtures import (
        FAST_RETRY,
        TEST_KEY_ID,
        TEST_SECRET,
        make_broker,
        running_sim,
        tradable_symbols,
    )
except ImportError:  # run from inside the tests folder
    from sim_fixtures import (  # type: ignore[no-redef]
        FAST_RETRY,
        TEST_KEY_ID,
        TEST_SECRET,
        make_broker,
        running_sim,
        tradable_symbols,
    )


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim() as running:
        yield running


@pytest.fixture
def broker(sim: SimBroker) -> AlpacaBroker:
    return make_broker(sim)


def market_buy(symbol: str, qty: str, cid: str, **extra: object) -> OrderRequest:
    return OrderRequest(symbol=symbol, side=OrderSide.BUY, qty=Decimal(qty), client_order_id=cid, **extra)  # type: ignore[arg-type]


def test_it_is_a_broker(broker: AlpacaBroker) -> None:
    assert isinstance(broker, Broker)


def test_active_assets_are_tradable_active_and_alphabetical(sim: SimBroker, broker: AlpacaBroker) -> None:
    assets = broker.active_assets()
    expected = [a.symbol for a in sim.market.assets if a.status == "active" and a.tradable]
    assert [a.symbol for a in assets] == expected == sorted(expected)
    assert all(a.tradable and a.status == "active" and a.exchange for a in assets)


def test_clock_and_calendar_are_timezone_aware_utc(broker: AlpacaBroker) -> None:
    clock = broker.clock()
    assert clock.is_open and clock.timestamp == datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    assert clock.next_close == datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
    assert clock.timestamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    sessions = broker.calendar(date(2026, 11, 23), date(2026, 11, 30))
    by_day = {s.day: s for s in sessions}
    assert date(2026, 11, 26) not in by_day  # Thanksgiving
    assert by_day[date(2026, 11, 27)].close == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # half day
    assert by_day[date(2026, 11, 24)].open == datetime(2026, 11, 24, 14, 30, tzinfo=UTC)


def test_account_has_decimal_money(broker: AlpacaBroker) -> None:
    account = broker.account()
    assert account.can_trade and account.currency == "USD"
    assert account.equity == Decimal("100000") and account.buying_power == Decimal("200000")
    assert isinstance(account.cash, Decimal)


def test_submit_returns_the_fill_and_a_json_safe_raw(sim: SimBroker, broker: AlpacaBroker) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    quote = sim.market.quote(symbol)
    assert quote is not None
    order = broker.submit_order(market_buy(symbol, "10", "tp-test-open-0"))
    assert order.is_filled and order.filled_qty == Decimal(10) and order.filled_avg_price == quote.ask
    assert order.client_order_id == "tp-test-open-0" and order.side is OrderSide.BUY and order.type is OrderType.MARKET
    assert order.filled_at is not None and order.filled_at.tzinfo is not None
    json.dumps(order.raw)  # the seed app crashed here on UUID/datetime objects
    assert order.raw["id"] == order.id and isinstance(order.raw["created_at"], str)
    positions = broker.positions()
    assert [(p.symbol, p.side, p.qty) for p in positions] == [(symbol, PositionSide.LONG, Decimal(10))]
    assert positions[0].avg_entry_price == quote.ask


def test_short_positions_have_positive_qty_and_short_side(sim: SimBroker, broker: AlpacaBroker) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    broker.submit_order(OrderRequest(symbol=symbol, side=OrderSide.SELL, qty=Decimal(3), client_order_id="short-1"))
    (position,) = broker.positions()
    assert position.side is PositionSide.SHORT and position.qty == Decimal(3)


def test_bracket_oco_open_orders_cancel_and_close(sim: SimBroker, broker: AlpacaBroker) -> None:
    a, b = tradable_symbols(sim.market, 2)
    quote = sim.market.quote(a)
    assert quote is not None
    cents = Decimal("0.01")
    bracket = broker.submit_order(
        market_buy(
            a,
            "5",
            "bracket-1",
            order_class=OrderClass.BRACKET,
            time_in_force=TimeInForce.GTC,
            take_profit_limit_price=(quote.ask * Decimal("1.2")).quantize(cents),
            stop_loss_stop_price=(quote.bid * Decimal("0.8")).quantize(cents),
        )
    )
    assert bracket.order_class is OrderClass.BRACKET and bracket.is_filled
    assert sorted(leg.type for leg in bracket.legs) == [OrderType.LIMIT, OrderType.STOP]
    assert all(leg.side is OrderSide.SELL for leg in bracket.legs)
    # Alpaca routes the take-profit (`new`) and keeps the stop-loss leg on its side, reported `held`.
    assert {leg.type: leg.status for leg in bracket.legs} == {OrderType.LIMIT: "new", OrderType.STOP: "held"}
    broker.submit_order(market_buy(b, "2", "entry-b"))
    quote_b = sim.market.quote(b)
    assert quote_b is not None
    oco = broker.submit_order(
        OrderRequest(
            symbol=b,
            side=OrderSide.SELL,
            qty=Decimal(2),
            client_order_id="oco-b",
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            order_class=OrderClass.OCO,
            take_profit_limit_price=(quote_b.ask * Decimal("1.3")).quantize(cents),
            stop_loss_stop_price=(quote_b.bid * Decimal("0.7")).quantize(cents),
        )
    )
    assert oco.order_class is OrderClass.OCO and len(oco.legs) == 1 and oco.is_open
    # `status=open&nested=true` selects a family by its primary order: the filled bracket entry is not listed, so
    # its working legs are not either; the listing of every order shows them under it.
    assert {o.client_order_id for o in broker.open_orders()} == {"oco-b"}
    [family] = [o for o in broker.all_orders([a], after=sim.market.now - timedelta(days=1))]
    assert family.client_order_id == "bracket-1" and all(leg.is_open for leg in family.legs)
    assert [o.client_order_id for o in broker.open_orders([b])] == ["oco-b"]
    assert broker.open_orders([]) == []
    with pytest.raises(OrderRejected, match="insufficient qty available") as held:
        broker.close_position(a)
    assert held.value.status == 403
    broker.cancel_order(bracket.legs[0].id)  # one leg cancels its sibling
    assert all(leg.status == "canceled" for leg in broker.order_by_client_order_id("bracket-1").legs)  # type: ignore[union-attr]
    close = broker.close_position(a)
    assert close.is_filled and close.side is OrderSide.SELL and close.filled_qty == Decimal(5)
    with pytest.raises(OrderRejected, match="already"):
        broker.cancel_order(close.id)
    with pytest.raises(NotFound):
        broker.close_position(a)


def test_order_by_client_order_id_is_none_when_unknown(broker: AlpacaBroker) -> None:
    assert broker.order_by_client_order_id("tp-never-sent") is None


def test_invalid_orders_raise_order_rejected_with_the_brokers_message(sim: SimBroker, broker: AlpacaBroker) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    for qty in ("0", "-5"):
        with pytest.raises(OrderRejected) as rejected:
            broker.submit_order(market_buy(symbol, qty, f"bad-qty{qty}"))
        assert rejected.value.message == "qty must be > 0" and rejected.value.status == 422
    with pytest.raises(OrderRejected, match="asset not found"):
        broker.submit_order(market_buy("NOPEZ", "1", "bad-symbol"))
    with pytest.raises(OrderRejected, match="insufficient buying power"):
        broker.submit_order(market_buy(symbol, "1000000", "too-big"))
    with pytest.raises(OrderRejected, match="client_order_id"):
        broker.submit_order(market_buy(symbol, "1", ""))
    with pytest.raises(OrderRejected):  # refused before sending: alpaca-py validates the side itself
        broker.submit_order(OrderRequest(symbol=symbol, side="hold", qty=Decimal(1), client_order_id="bad-side"))  # type: ignore[arg-type]
    assert sim.requests("POST /v2/orders") == 4


def test_daily_bars_are_decimal_sorted_and_cover_the_range(sim: SimBroker, broker: AlpacaBroker) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    bars = broker.daily_bars(["SPY", symbol], date(2026, 10, 26), date(2026, 11, 23))
    sessions = len(sim.market.sessions.indices_between(date(2026, 10, 26), date(2026, 11, 23)))
    assert len(bars) == 2 * sessions
    assert bars == sorted(bars, key=lambda bar: (bar.symbol, bar.timestamp))
    spy = [b for b in bars if b.symbol == "SPY"]
    expected = sim.market.daily_bars(["SPY"], date(2026, 10, 26), date(2026, 11, 23))["SPY"]
    assert [(b.timestamp, b.close) for b in spy] == [(e.timestamp, e.close) for e in expected]
    assert all(isinstance(b.close, Decimal) and b.timestamp.tzinfo is not None for b in bars)
    with pytest.raises(ValueError, match="malformed"):
        broker.daily_bars(["SPY", "sp y"], date(2026, 11, 2), date(2026, 11, 3))


def test_data_api_errors_without_code_are_read_defensively(sim: SimBroker, broker: AlpacaBroker) -> None:
    with pytest.raises(APIError) as raised:
        broker._data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=["SPY", "bad!"]))
    with pytest.raises(KeyError):
        _ = raised.value.code  # alpaca-py's own accessor fails on a data-API error
    failure = error_details(raised.value)
    assert failure is not None and failure.status == 400 and failure.message == "invalid symbol: bad!"
    sim.faults.fail_next("503", count=10, route="GET /v2/account")
    with pytest.raises(BrokerUnavailable, match="upstream connect error") as unavailable:
        broker.account()
    assert unavailable.value.status == 503


def test_keys_never_appear_in_reprs_errors_or_logs(sim: SimBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker = make_broker(sim, timeout=0.3, retry=FAST_RETRY)
    texts = [repr(broker), str(broker)]
    sim.faults.fail_next("500", count=10, route="GET /v2/clock")
    sim.faults.fail_next("timeout", count=10, route="GET /v2/account")
    sim.faults.configure(timeout_seconds=1.0)
    failures: list[BaseException] = []
    for call in (broker.clock, broker.account, lambda: broker.submit_order(market_buy("SPY", "0", "zero"))):
        with pytest.raises(BrokerError) as raised:
            call()
        failures.append(raised.value)
    for exc in failures:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    texts += [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    everything = "\n".join(texts)
    assert TEST_KEY_ID not in everything and TEST_SECRET not in everything
    assert "AlpacaBroker(" in texts[0]


def test_from_settings_reads_keys_and_urls(sim: SimBroker) -> None:
    env = sim.env(api_key=TEST_KEY_ID, secret_key=TEST_SECRET)
    broker = AlpacaBroker.from_settings(Settings.from_env(env), env, retry=FAST_RETRY)
    assert broker.trading_url == sim.url and broker.data_url == sim.url and broker.paper
    assert broker.clock().is_open


def test_from_settings_names_the_missing_variables() -> None:
    settings = Settings.from_env({"TRADING_PIPELINE_BROKER": "alpaca"})
    with pytest.raises(ConfigurationError, match="ALPACA_API_KEY and ALPACA_SECRET_KEY"):
        AlpacaBroker.from_settings(settings, {})
    with pytest.raises(ConfigurationError) as one:
        AlpacaBroker.from_settings(settings, {"ALPACA_API_KEY": "k", "ALPACA_SECRET_KEY": "  "})
    assert "ALPACA_SECRET_KEY" in str(one.value) and "ALPACA_API_KEY" not in str(one.value).split("needs")[1][:20]


def test_live_mode_needs_the_explicit_opt_in() -> None:
    with pytest.raises(SettingsError, match="TRADING_LIVE_CONFIRM"):
        Settings.from_env({"TRADING_MODE": "live"})
    live = Settings.from_env({"TRADING_MODE": "live", "TRADING_LIVE_CONFIRM": "yes-real-money"})
    broker = AlpacaBroker.from_settings(live, {"ALPACA_API_KEY": "k", "ALPACA_SECRET_KEY": "s"})
    assert not broker.paper and "api.alpaca.markets" in repr(broker) and "paper" not in repr(broker).split(",")[0]
    paper = AlpacaBroker.from_settings(Settings.from_env({}), {"ALPACA_API_KEY": "k", "ALPACA_SECRET_KEY": "s"})
    assert paper.paper and "paper-api.alpaca.markets" in repr(paper)


def test_url_roots_are_normalised(sim: SimBroker) -> None:
    broker = make_broker(sim, trading_url=sim.url + "/v2/", data_url=sim.url + "/")
    assert broker.trading_url == sim.url == broker.data_url
    assert broker.clock().is_open
