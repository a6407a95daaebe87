"""Symbol changes and the positions listing's bad days, through alpaca-py (issue 24): a rename moves the
position and its open orders to the new symbol at once and is announced (`name_changes`) only after its delay;
`GET /v2/positions` can answer `[]` or another account's book while ours exists; fractional positions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import CorporateActionsType
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.models.corporate_actions import NameChange
from alpaca.data.requests import CorporateActionsRequest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest

from trading_pipeline.domain.corporate_actions import NAME_CHANGE
from trading_pipeline.sim.server import SimBroker

try:
    from trading_pipeline_tests.sim_fixtures import (
        TEST_KEY_ID,
        TEST_SECRET,
        make_broker,
        running_sim,
        tradable_symbols,
    )
except ImportError:  # run from inside the tests folder
    from sim_fixtures import (  # type: ignore[no-redef]
        TEST_KEY_ID,
        TEST_SECRET,
        make_broker,
        running_sim,
        tradable_symbols,
    )

NEW_SYMBOL = "RNMD"


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim() as running:
        yield running


@pytest.fixture
def trading(sim: SimBroker) -> TradingClient:
    return TradingClient(TEST_KEY_ID, TEST_SECRET, paper=True, url_override=sim.url)


def buy(trading: TradingClient, symbol: str, qty: float) -> None:
    trading.submit_order(MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))


def name_changes(sim: SimBroker, symbol: str) -> list[NameChange]:
    client = CorporateActionsClient(TEST_KEY_ID, TEST_SECRET, url_override=sim.url)
    today = sim.market.now.date()
    found = client.get_corporate_actions(
        CorporateActionsRequest(symbols=[symbol], types=[CorporateActionsType.NAME_CHANGE], start=today, end=today)
    )
    return list(found.data.get("name_changes", []))  # type: ignore[union-attr]


# ---- renames --------------------------------------------------------------------------------------------


def test_a_rename_moves_the_position_and_open_orders_and_is_announced_after_its_delay(
    sim: SimBroker, trading: TradingClient
) -> None:
    old = tradable_symbols(sim.market, 1)[0]
    assert sim.market.asset(NEW_SYMBOL) is None
    asset_id = trading.get_asset(old).id
    buy(trading, old, 10)
    quote = sim.market.quote(old)
    assert quote is not None
    trading.submit_order(
        LimitOrderRequest(
            symbol=old, qty=4, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, limit_price=float(quote.ask) * 2
        )
    )
    response = requests.post(
        sim.url + "/_sim/rename",
        json={"old_symbol": old, "new_symbol": NEW_SYMBOL, "publish_delay_seconds": 3600},
        timeout=5,
    )
    assert response.status_code == 200 and response.json()["new_symbol"] == NEW_SYMBOL
    assert {p.symbol: p.qty for p in trading.get_all_positions()} == {NEW_SYMBOL: "10"}
    with pytest.raises(APIError) as gone:
        trading.get_open_position(old)
    assert gone.value.status_code == 404
    assert trading.get_asset(NEW_SYMBOL).id == asset_id
    open_orders = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert [(o.symbol, o.qty) for o in open_orders] == [(NEW_SYMBOL, "4")]  # type: ignore[union-attr]
    assert sim.market.quote(NEW_SYMBOL) is not None and sim.market.quote(old) is None
    assert name_changes(sim, old) == []  # not published yet
    sim.market.advance(timedelta(minutes=61))
    for symbol in (old, NEW_SYMBOL):
        [change] = name_changes(sim, symbol)
        assert (change.old_symbol, change.new_symbol) == (old, NEW_SYMBOL)
        assert change.process_date == sim.market.now.date() and change.old_cusip != change.new_cusip


def test_the_adapter_reports_a_published_rename_as_a_name_change(sim: SimBroker) -> None:
    old = tradable_symbols(sim.market, 1)[0]
    broker = make_broker(sim)
    sim.market.rename(old, NEW_SYMBOL, publish_delay=timedelta(minutes=30))
    today = sim.market.now.date()
    assert broker.corporate_actions([old], today, today) == []
    sim.market.advance(timedelta(minutes=30))
    [action] = broker.corporate_actions([old], today, today)
    assert (action.kind, action.symbol, action.new_symbol, action.ex_date) == (NAME_CHANGE, old, NEW_SYMBOL, today)


# ---- the positions listing ------------------------------------------------------------------------------


def test_the_positions_listing_can_come_back_empty_while_positions_exist(
    sim: SimBroker, trading: TradingClient
) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    buy(trading, symbol, 10)
    response = requests.post(sim.url + "/_sim/faults", json={"positions_listing": "empty"}, timeout=5)
    assert response.status_code == 200 and response.json()["config"]["positions_listing"] == "empty"
    assert trading.get_all_positions() == []
    assert make_broker(sim).positions() == []
    assert trading.get_open_position(symbol).qty == "10"  # the position is still there
    sim.faults.clear()
    assert [p.symbol for p in trading.get_all_positions()] == [symbol]


def test_the_positions_listing_can_answer_another_accounts_book(sim: SimBroker, trading: TradingClient) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    buy(trading, symbol, 10)
    sim.faults.configure(positions_listing="foreign")
    listed = trading.get_all_positions()
    assert len(listed) == 3 and symbol not in {p.symbol for p in listed}
    assert all(Decimal(str(p.qty)) > 0 for p in listed)
    assert trading.get_open_position(symbol).qty == "10"
    with pytest.raises(ValueError):
        sim.faults.configure(positions_listing="sometimes")


def test_fractional_positions(sim: SimBroker, trading: TradingClient) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]  # fractionable (tradable_symbols picks fractionable ones)
    buy(trading, symbol, 0.5)
    assert trading.get_open_position(symbol).qty == "0.5"
    trading.submit_order(
        MarketOrderRequest(symbol=symbol, qty=0.25, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
    )
    [position] = trading.get_all_positions()
    assert (position.symbol, position.qty, position.qty_available) == (symbol, "0.25", "0.25")
    assert make_broker(sim).position(symbol).qty == Decimal("0.25")  # type: ignore[union-attr]


def test_a_split_announced_before_a_rename_is_applied_to_the_new_symbol(sim: SimBroker, trading: TradingClient) -> None:
    old = tradable_symbols(sim.market, 1)[0]
    buy(trading, old, 10)
    split = sim.market.split(old, 2, 1, ex_date=sim.market.clock().next_open.date())
    sim.market.rename(old, NEW_SYMBOL)
    sim.market.advance_to(sim.market.clock().next_open)
    assert split.applied and trading.get_open_position(NEW_SYMBOL).qty == "20"
