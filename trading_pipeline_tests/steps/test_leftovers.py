"""Leftover `closing` rows (steps/leftovers.py): a close order that died at the broker without a fill (canceled,
expired) is released after the grace, so the next run closes the position again; inside the grace it is left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.types import ExitReason, OrderAction, TradeStatus
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.steps.leftovers import LEFTOVER_GRACE, resolve_leftover_closes
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import broker_orders, seed_positions
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols

AFTER_THE_CLOSE = datetime(2026, 11, 24, 21, 5, tzinfo=UTC)  # 16:05 in New York: day orders have expired


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def claimed_with_a_dead_order(db: Database, sim, ending: str) -> tuple[trades_repo.TradeRecord, datetime]:
    """A trade claimed for close whose close order (an unfillable day limit) then ended unfilled at the broker."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=5)
    cid = client_order_id(trade.id, OrderAction.CLOSE, 0)
    claimed_at = sim.market.now
    assert claims_repo.claim_for_close(
        db, trade.id, client_order_id=cid, reason=ExitReason.STOP_LOSS, trigger_price=None, run_id="r0", now=claimed_at
    )
    price = sim.market.last_price(trade.symbol)
    order = sim.market.submit_order(
        {
            "symbol": trade.symbol,
            "qty": "5",
            "side": "sell",
            "type": "limit",
            "limit_price": str((price * 2).quantize(Decimal("0.01"))),
            "time_in_force": "day",
            "client_order_id": cid,
        }
    )
    if ending == "canceled":
        sim.market.cancel_order(order.id)
    else:
        sim.market.advance_to(AFTER_THE_CLOSE)
    assert (order.status, order.filled_qty) == (ending, Decimal(0))
    return trade, claimed_at


@pytest.mark.parametrize("ending", ["canceled", "expired"])
def test_a_leftover_close_whose_order_died_unfilled_is_released_after_the_grace(db: Database, sim, ending) -> None:
    trade, claimed_at = claimed_with_a_dead_order(db, sim, ending)
    broker = make_broker(sim)
    young = SweepResult()
    resolve_leftover_closes(db, broker, young, now=claimed_at + timedelta(seconds=10), grace=LEFTOVER_GRACE)
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSING  # maybe a run is mid-close
    assert young.leftovers_released == 0
    later = SweepResult()
    resolve_leftover_closes(db, broker, later, now=claimed_at + LEFTOVER_GRACE * 2, grace=LEFTOVER_GRACE)
    released = trades_repo.get_trade(db, trade.id)
    assert released.status is TradeStatus.OPEN and released.close_client_order_id is None
    assert later.leftovers_released == 1


def test_a_released_leftover_is_closed_again_by_the_next_sweep(db: Database, sim) -> None:
    trade, claimed_at = claimed_with_a_dead_order(db, sim, "canceled")
    sim.market.gap(trade.symbol, -15)
    result = run_stop_loss_sweep(
        db, make_broker(sim), run_id="r1", now=claimed_at + LEFTOVER_GRACE * 2, max_quote_age=None
    )
    assert result.leftovers_released == 1 and result.orders_submitted == 1
    retry = client_order_id(trade.id, OrderAction.CLOSE, 1)
    filled = [o.client_order_id for o in broker_orders(sim) if o.side == "sell" and o.status == "filled"]
    assert filled == [retry]
    closed = trades_repo.get_trade(db, trade.id)
    assert closed.status is TradeStatus.CLOSED and closed.close_client_order_id == retry
