"""One close sized against the broker's book (steps/close_orders.py): the order sells what the broker holds after
the trade is cut to it, a stop leg that filled in part is not the whole close, and a 403 for held quantity from an
order the listing did not show is freed and retried in the same run."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from trading_pipeline.broker.base import BrokerOrder, OrderSide, OrderType
from trading_pipeline.domain.types import ExitReason, PositionSide, TradeStatus
from trading_pipeline.steps.close_orders import _record_leg_close
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import broker_orders, seed_positions
from trading_pipeline_tests.sim_fixtures import FAST_RETRY, make_broker, running_sim, tradable_symbols

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def sells(sim, symbol: str) -> list:
    return [o for o in broker_orders(sim) if o.side == "sell" and o.symbol == symbol]


def test_a_trade_reduced_to_the_held_quantity_is_closed_for_the_held_quantity(db: Database, sim) -> None:
    """The DB says 10, the broker holds 6: the close order is for 6 (the reduced trade), not the old 10."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=10)
    sim.market.drift_position(trade.symbol, 6)
    sim.market.gap(trade.symbol, -15)
    result = run_stop_loss_sweep(db, make_broker(sim), run_id="r1", now=sim.market.now, max_quote_age=None)
    assert trade.symbol in result.drift_repaired
    assert [o.qty for o in sells(sim, trade.symbol)] == [Decimal(6)]
    assert trade.symbol not in sim.market.book.positions  # flat, never short
    closed = trades_repo.get_trade(db, trade.id)
    assert closed.status is TradeStatus.CLOSED and closed.qty == Decimal(6)


def test_a_stop_leg_filled_in_part_while_cancelled_is_not_recorded_as_the_whole_close(db: Database) -> None:
    trade = trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            symbol="AAA",
            side=PositionSide.LONG,
            qty=Decimal(10),
            entry_price=Decimal(100),
            entry_at=NOW,
            stop_loss=Decimal(97),
            take_profit=Decimal(106),
            protected=True,
        ),
    )
    assert claims_repo.claim_for_close(
        db, trade.id, client_order_id="tp-x", reason=ExitReason.TRAILING_STOP, trigger_price=None, run_id=None
    )
    leg = BrokerOrder(
        id="leg-stop",
        client_order_id="leg-stop",
        symbol="AAA",
        side=OrderSide.SELL,
        qty=Decimal(10),
        type=OrderType.STOP,
        status="canceled",
        filled_qty=Decimal(4),
        filled_avg_price=Decimal(97),
        submitted_at=NOW,
        filled_at=NOW,
        stop_price=Decimal(97),
    )
    result = SweepResult()
    assert _record_leg_close(db, trade, "tp-x", leg, result) is False
    after = trades_repo.get_trade(db, trade.id)
    assert after.status is not TradeStatus.CLOSED and after.qty == Decimal(10)
    assert result.closed == 0 and not result.closes_by_reason


def test_a_held_qty_refusal_from_an_unlisted_order_is_freed_and_retried_in_the_same_run(db: Database, sim) -> None:
    """The open-orders listing fails, so the book does not show an outside order holding every share: the close
    is refused (403 insufficient qty). The holder is found by a fresh look-up, cancelled, and the close retried —
    the position is sold in this run, not the next."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=10)
    price = sim.market.last_price(trade.symbol)
    outside = sim.market.submit_order(
        {
            "symbol": trade.symbol,
            "qty": "10",
            "side": "sell",
            "type": "limit",
            "limit_price": str((price * 2).quantize(Decimal("0.01"))),
            "time_in_force": "gtc",
            "client_order_id": "placed-in-the-web-app-1",
        }
    )
    sim.market.gap(trade.symbol, -15)
    sim.faults.fail_next("500", count=FAST_RETRY.max_attempts, route="GET /v2/orders")  # the book's one listing
    sim.reset_counters()
    result = run_stop_loss_sweep(db, make_broker(sim), run_id="r1", now=sim.market.now, max_quote_age=None)
    assert "(open orders)" in result.book_problems  # the listing really was missing
    assert sim.requests("POST /v2/orders") == 2  # refused with 403, then sent again after the cancel
    assert sim.market.book.orders[outside.id].status == "canceled"
    assert [(o.qty, o.status) for o in sells(sim, trade.symbol) if o.id != outside.id] == [(Decimal(10), "filled")]
    assert trade.symbol not in sim.market.book.positions
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED
    assert trade.symbol not in result.failures
