"""Freeing held quantity (steps/holding_orders.py): a cancel the broker has not confirmed (`pending_cancel`) has
not freed any shares; one it confirmed has."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading_pipeline.steps.holding_orders import free_quantity
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def outside_sell(sim) -> str:
    """A position of 10 with a far-away limit sell holding all of it; returns the order's broker id."""
    symbol = tradable_symbols(sim.market, 1)[0]
    sim.market.submit_order({"symbol": symbol, "qty": "10", "side": "buy", "type": "market", "time_in_force": "day"})
    price = sim.market.last_price(symbol)
    order = sim.market.submit_order(
        {
            "symbol": symbol,
            "qty": "10",
            "side": "sell",
            "type": "limit",
            "limit_price": str((price * 2).quantize(Decimal("0.01"))),
            "time_in_force": "gtc",
        }
    )
    return order.id


def test_a_cancel_still_pending_is_unconfirmed_not_freed(sim) -> None:
    order_id = outside_sell(sim)
    sim.market.book.cancel_delay_lookups = 100  # the venue takes longer than all our polls to confirm
    broker = make_broker(sim)
    [holder] = [o for o in broker.open_orders() if o.id == order_id]
    waits: list[float] = []
    freed = free_quantity(broker, [holder], sleep=waits.append, polls=3)
    assert sim.market.book.orders[order_id].status == "pending_cancel"
    assert [o.id for o in freed.unconfirmed] == [order_id]
    assert [o.status for o in freed.unconfirmed] == ["pending_cancel"]
    assert freed.cancelled == [] and freed.free is False
    assert len(waits) == 3  # it did wait for the confirmation, with the fake clock


def test_a_confirmed_cancel_frees_the_shares(sim) -> None:
    order_id = outside_sell(sim)
    sim.market.book.cancel_delay_lookups = 1  # pending for one read, then canceled
    broker = make_broker(sim)
    [holder] = [o for o in broker.open_orders() if o.id == order_id]
    freed = free_quantity(broker, [holder], sleep=lambda s: None, polls=3)
    assert [(o.id, o.status) for o in freed.cancelled] == [(order_id, "canceled")]
    assert freed.unconfirmed == [] and freed.free is True
