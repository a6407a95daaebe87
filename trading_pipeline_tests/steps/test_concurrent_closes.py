"""Closes run for several symbols at once (bounded by `close_concurrency`): every crossed position is sold exactly
once, two trades in one symbol are still sized one after the other, the counts add up across the workers, and
the fills are read from a listing of the run's orders, not looked up one by one."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from trading_pipeline.domain.types import TradeStatus
from trading_pipeline.steps.closes import CLOSE_CONCURRENCY, run_stop_loss_sweep
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import seed_positions
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def test_twenty_crossed_symbols_close_concurrently_each_exactly_once(database_url: str, db: Database, sim) -> None:
    symbols = tradable_symbols(sim.market, 20)
    # One symbol holds two trades: the broker holds 10 of them, so only 10 may be sold there (drift, never short).
    trades = seed_positions(db, sim, [*symbols, symbols[0]], qty=5)
    sim.market.book.positions[symbols[0]].qty = Decimal(5)
    for symbol in symbols:
        sim.market.gap(symbol, -15)
    sim.faults.configure(latency_ms=20)  # requests overlap in the sim
    broker = make_broker(sim)
    sim.reset_counters()
    result = run_stop_loss_sweep(db, broker, run_id="many", now=sim.market.now, max_quote_age=None)
    # 20 POSTs, and their fills read in listings of the run's orders, never one look-up per order.
    assert sim.requests("POST /v2/orders") == 20 and sim.requests("GET /v2/orders:by_client_order_id") == 0
    assert 1 <= result.fill_listings <= 3
    assert sim.requests("GET /v2/orders") == 1 + result.fill_listings  # + the book's one open-orders listing

    assert result.close_workers == min(CLOSE_CONCURRENCY, len(symbols))
    sold = Counter()
    for order in sim.market.book.orders.values():
        if order.side == "sell":
            sold[order.symbol] += order.filled_qty
    assert sold == {symbol: Decimal(5) for symbol in symbols}  # once each; the drifted symbol not beyond held
    assert not any(p.qty < 0 for p in sim.market.book.positions.values())
    statuses = Counter(trades_repo.get_trade(db, t.id).status for t in trades)
    assert statuses == {TradeStatus.CLOSED: 20, TradeStatus.OPEN: 1}  # the other trade waits for the repair
    assert (result.exits_decided, result.claimed, result.orders_submitted, result.closed) == (21, 20, 20, 20)
    assert sum(result.closes_by_reason.values()) == 20 and len(result.closed_trades) == 20
    assert db.monitor.stats().checkouts_during_broker_calls == 0
    sequential = Database(database_url)
    try:
        again = run_stop_loss_sweep(sequential, broker, run_id="again", now=sim.market.now, close_concurrency=1)
    finally:
        sequential.dispose()
    assert again.close_workers == 1 and again.orders_submitted == 0  # nothing left to sell: the broker is flat


def test_counts_from_workers_add_up() -> None:
    total, part = SweepResult(claimed=1, failures={"A": "x"}), SweepResult(claimed=2, failures={"B": "y"})
    part.closes_by_reason["stop_loss"] += 2
    part.outside_orders_cancelled.append("o-1")
    total.absorb(part)
    total.absorb(SweepResult(closed=3))
    assert (total.claimed, total.closed, total.failures) == (3, 3, {"A": "x", "B": "y"})
    assert total.closes_by_reason == {"stop_loss": 2} and total.outside_orders_cancelled == ["o-1"]
