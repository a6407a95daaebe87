"""`AlpacaBroker.replace_stop` against the simulator: a stop (a bracket's stop leg too) moved with Alpaca's
`PATCH /v2/orders/{order_id}`, retried like a cancel, at the closes' priority (issue 24)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from trading_pipeline.broker.alpaca import AlpacaBroker
from trading_pipeline.broker.alpaca_calls import operation_priority
from trading_pipeline.broker.base import Broker, OrderRejected
from trading_pipeline.broker.rate_limit import Priority
from trading_pipeline.sim.account import SimOrder
from trading_pipeline.sim.server import SimBroker

try:
    from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols
except ImportError:  # run from inside the tests folder
    from sim_fixtures import make_broker, running_sim, tradable_symbols  # type: ignore[no-redef]

PATCH_ROUTE = "PATCH /v2/orders/{order_id}"


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim() as running:
        yield running


@pytest.fixture
def broker(sim: SimBroker) -> AlpacaBroker:
    return make_broker(sim)


def filled_bracket(sim: SimBroker, symbol: str) -> tuple[SimOrder, SimOrder]:
    quote = sim.market.quote(symbol)
    assert quote is not None
    parent = sim.market.submit_order(
        {
            "symbol": symbol,
            "qty": 10,
            "side": "buy",
            "type": "market",
            "time_in_force": "gtc",
            "order_class": "bracket",
            "take_profit": {"limit_price": str((quote.ask * Decimal("1.5")).quantize(Decimal("0.01")))},
            "stop_loss": {"stop_price": str((quote.ask * Decimal("0.9")).quantize(Decimal("0.01")))},
        }
    )
    assert parent.status == "filled"
    [stop] = [leg for leg in sim.market.book.legs(parent) if leg.type == "stop"]
    return parent, stop


def working_stops(sim: SimBroker, symbol: str) -> list[str]:
    return [o.id for o in sim.market.book.working.values() if o.symbol == symbol and o.type == "stop"]


def test_replace_stop_is_part_of_the_broker_protocol_and_spends_the_closes_budget(broker: AlpacaBroker) -> None:
    assert isinstance(broker, Broker)
    assert operation_priority("replace_stop") is Priority.CLOSE


def test_replace_stop_moves_a_brackets_stop_leg(sim: SimBroker, broker: AlpacaBroker) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    parent, stop = filled_bracket(sim, symbol)
    level = (stop.stop_price or Decimal(0)) + Decimal("1.00")
    moved = broker.replace_stop(stop.id, level)
    assert moved.id != stop.id and moved.stop_price == level and moved.symbol == symbol
    assert stop.status == "replaced" and stop.replaced_by == moved.id
    after = broker.order_by_id(parent.id)
    assert after is not None and moved.id in {leg.id for leg in after.legs}
    assert working_stops(sim, symbol) == [moved.id]


def test_a_replace_whose_answer_was_lost_returns_the_replacement(sim: SimBroker, broker: AlpacaBroker) -> None:
    """The PATCH went through, the gateway answered 504, the retry found the order `replaced`: the answer is
    the order that replaced it, not an error and not a second replacement."""
    symbol = tradable_symbols(sim.market, 1)[0]
    _, stop = filled_bracket(sim, symbol)
    sim.faults.fail_next("504", route=PATCH_ROUTE)
    moved = broker.replace_stop(stop.id, (stop.stop_price or Decimal(0)) + Decimal("0.50"))
    assert stop.replaced_by == moved.id and working_stops(sim, symbol) == [moved.id]
    assert sim.requests(PATCH_ROUTE) >= 2


def test_replacing_a_filled_stop_is_refused(sim: SimBroker, broker: AlpacaBroker) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    _, stop = filled_bracket(sim, symbol)
    sim.market.gap(symbol, -20)
    assert stop.status == "filled"
    with pytest.raises(OrderRejected, match="filled"):
        broker.replace_stop(stop.id, Decimal("1.00"))
