"""`PATCH /v2/orders/{order_id}` and the insufficient-quantity refusal, each through alpaca-py's TradingClient
(issue 24). The sources are quoted in `sim/replace.py` and `sim/order_checks.py`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)

from trading_pipeline.sim.server import SimBroker

try:
    from trading_pipeline_tests.sim_fixtures import TEST_KEY_ID, TEST_SECRET, running_sim, tradable_symbols
except ImportError:  # run from inside the tests folder
    from sim_fixtures import TEST_KEY_ID, TEST_SECRET, running_sim, tradable_symbols  # type: ignore[no-redef]


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim() as running:
        yield running


@pytest.fixture
def trading(sim: SimBroker) -> TradingClient:
    return TradingClient(TEST_KEY_ID, TEST_SECRET, paper=True, url_override=sim.url)


def refused(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(APIError) as caught:
        call()
    return caught.value.status_code, json.loads(str(caught.value))


def nested(trading: TradingClient, order_id: object) -> Order:
    order = trading.get_order_by_id(str(order_id), filter=GetOrderByIdRequest(nested=True))
    assert isinstance(order, Order)
    return order


def bracket(sim: SimBroker, trading: TradingClient, symbol: str, *, limit: float | None = None) -> Order:
    quote = sim.market.quote(symbol)
    assert quote is not None
    ask = float(quote.ask)
    levels: dict[str, Any] = {
        "symbol": symbol,
        "qty": 10,
        "side": OrderSide.BUY,
        "time_in_force": TimeInForce.GTC,
        "order_class": OrderClass.BRACKET,
        "take_profit": TakeProfitRequest(limit_price=round(ask * 1.5, 2)),
        "stop_loss": StopLossRequest(stop_price=round((limit or ask) * 0.9, 2)),
    }
    request = MarketOrderRequest(**levels) if limit is None else LimitOrderRequest(limit_price=limit, **levels)
    order = trading.submit_order(request)
    assert isinstance(order, Order)
    return nested(trading, order.id)


def stop_leg(order: Order) -> Order:
    [leg] = [leg for leg in order.legs or [] if leg.stop_price is not None]
    return leg


def working_stops(sim: SimBroker, symbol: str) -> list[str]:
    return [o.id for o in sim.market.book.working.values() if o.symbol == symbol and o.type == "stop"]


def test_selling_more_than_is_free_of_orders_is_alpacas_403_with_its_body(
    sim: SimBroker, trading: TradingClient
) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    quote = sim.market.quote(symbol)
    assert quote is not None
    trading.submit_order(MarketOrderRequest(symbol=symbol, qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    trading.submit_order(
        LimitOrderRequest(
            symbol=symbol, qty=6, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, limit_price=float(quote.ask) * 2
        )
    )
    sell = MarketOrderRequest(symbol=symbol, qty=10, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
    status, body = refused(lambda: trading.submit_order(sell))
    assert status == 403
    assert body == {
        "code": 40310000,
        "message": "insufficient qty available for order (requested: 10, available: 4)",
        "available": "4",
        "existing_qty": "10",
        "held_for_orders": "6",
        "symbol": symbol,
    }


def test_replacing_a_filled_brackets_stop_leg_answers_the_new_leg_of_the_same_parent(
    sim: SimBroker, trading: TradingClient
) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    parent = bracket(sim, trading, symbol)
    assert parent.status == OrderStatus.FILLED
    old = stop_leg(parent)
    assert old.status == OrderStatus.HELD
    new_stop = round(float(old.stop_price or 0) * 1.05, 2)
    new = trading.replace_order_by_id(str(old.id), ReplaceOrderRequest(stop_price=new_stop))
    assert isinstance(new, Order)
    assert new.id != old.id and new.replaces == old.id and new.status == OrderStatus.HELD
    assert Decimal(str(new.stop_price)) == Decimal(str(new_stop)) and new.qty == old.qty
    before = trading.get_order_by_id(str(old.id))
    assert isinstance(before, Order)
    assert before.status == OrderStatus.REPLACED and before.replaced_by == new.id and before.replaced_at is not None
    assert stop_leg(nested(trading, parent.id)).id == new.id  # the parent's legs list the new leg, not the old
    listed = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, nested=True, symbols=[symbol]))
    legs = [leg.id for o in listed if isinstance(o, Order) for leg in o.legs or []]
    assert new.id in legs and old.id not in legs
    assert working_stops(sim, symbol) == [str(new.id)]  # never two live stop legs
    sim.market.gap(symbol, -15)
    after = nested(trading, parent.id)
    assert stop_leg(after).status == OrderStatus.FILLED and symbol not in sim.market.book.positions
    assert [leg.status for leg in after.legs or [] if leg.stop_price is None] == [OrderStatus.CANCELED]


def test_a_stop_leg_held_for_its_unfilled_entry_can_be_replaced(sim: SimBroker, trading: TradingClient) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    quote = sim.market.quote(symbol)
    assert quote is not None
    parent = bracket(sim, trading, symbol, limit=round(float(quote.bid) * 0.8, 2))
    assert parent.status == OrderStatus.NEW
    old = stop_leg(parent)
    new = trading.replace_order_by_id(str(old.id), ReplaceOrderRequest(stop_price=float(old.stop_price or 0) - 0.5))
    assert isinstance(new, Order) and new.replaces == old.id and new.status == OrderStatus.HELD
    assert stop_leg(nested(trading, parent.id)).id == new.id
    trading.cancel_order_by_id(str(parent.id))  # the group still cancels together, the new leg with it
    assert stop_leg(nested(trading, parent.id)).status == OrderStatus.CANCELED


def test_a_simple_stop_is_replaced_and_the_old_one_never_fills(sim: SimBroker, trading: TradingClient) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    quote = sim.market.quote(symbol)
    assert quote is not None
    trading.submit_order(MarketOrderRequest(symbol=symbol, qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))
    old = trading.submit_order(
        StopOrderRequest(
            symbol=symbol,
            qty=5,
            side=OrderSide.SELL,
            time_in_force=TimeInForce.GTC,
            stop_price=round(float(quote.bid) * 0.8, 2),
        )
    )
    assert isinstance(old, Order)
    new = trading.replace_order_by_id(
        str(old.id), ReplaceOrderRequest(stop_price=round(float(quote.bid) * 0.7, 2), qty=4)
    )
    assert isinstance(new, Order) and new.replaces == old.id and new.qty == "4"
    assert sim.market.book.held_for_orders(symbol) == 4
    sim.market.gap(symbol, -25)  # through the old level only
    assert trading.get_order_by_id(str(old.id)).status == OrderStatus.REPLACED  # type: ignore[union-attr]
    assert trading.get_order_by_id(str(new.id)).status == OrderStatus.NEW  # type: ignore[union-attr]


def test_orders_that_are_not_open_are_not_replaceable(sim: SimBroker, trading: TradingClient) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    quote = sim.market.quote(symbol)
    assert quote is not None
    filled = trading.submit_order(
        MarketOrderRequest(symbol=symbol, qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    assert isinstance(filled, Order)
    status, body = refused(lambda: trading.replace_order_by_id(str(filled.id), ReplaceOrderRequest(qty=3)))
    assert (status, body) == (422, {"code": 42210000, "message": 'order is already in "filled" state'})
    limit = trading.submit_order(
        LimitOrderRequest(
            symbol=symbol,
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=round(float(quote.bid) * 0.5, 2),
        )
    )
    assert isinstance(limit, Order)
    status, body = refused(lambda: trading.replace_order_by_id(str(limit.id), ReplaceOrderRequest(qty=1)))
    assert (status, body) == (403, {"code": 40310000, "message": "order parameters are not changed"})
    trading.cancel_order_by_id(str(limit.id))
    status, body = refused(lambda: trading.replace_order_by_id(str(limit.id), ReplaceOrderRequest(qty=2)))
    assert (status, body["message"]) == (422, 'order is already in "canceled" state')
    sim.market.advance_to(sim.market.clock().next_close + timedelta(minutes=5))
    queued = trading.submit_order(
        LimitOrderRequest(
            symbol=symbol,
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=round(float(quote.bid) * 0.5, 2),
        )
    )
    assert isinstance(queued, Order) and queued.status == OrderStatus.ACCEPTED
    status, body = refused(lambda: trading.replace_order_by_id(str(queued.id), ReplaceOrderRequest(qty=2)))
    assert (status, body["message"]) == (422, "unable to replace order, order isn't sent to exchange yet")


def test_a_buy_replaced_by_one_the_account_cannot_afford_is_refused(sim: SimBroker, trading: TradingClient) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    quote = sim.market.quote(symbol)
    assert quote is not None
    limit = trading.submit_order(
        LimitOrderRequest(
            symbol=symbol,
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=round(float(quote.bid) * 0.5, 2),
        )
    )
    assert isinstance(limit, Order)
    too_many = int(sim.market.book.account_values().buying_power / Decimal(str(limit.limit_price))) + 10
    status, body = refused(lambda: trading.replace_order_by_id(str(limit.id), ReplaceOrderRequest(qty=too_many)))
    assert (status, body["code"], body["message"]) == (403, 40310000, "insufficient buying power")
    moved = trading.replace_order_by_id(str(limit.id), ReplaceOrderRequest(qty=2))
    assert isinstance(moved, Order) and moved.qty == "2" and moved.replaces == limit.id
