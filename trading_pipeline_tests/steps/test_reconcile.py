"""Reconciliation (steps/reconcile.py): a pending entry is given its grace before it is written off, and a quantity
that moved by a split-like ratio (forward or reverse) is reported as a possible split and never cut."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.types import OrderAction, PositionSide, TradeStatus
from trading_pipeline.steps.reconcile import PENDING_GRACE, Reconciliation, reconcile_positions, resolve_pending_entries
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import seed_positions
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def pending_entry(db: Database, symbol: str, age: timedelta, now) -> trades_repo.TradeRecord:
    """A pending entry whose order the broker has no record of (never arrived), submitted `age` before `now`."""
    trade_id = uuid.uuid4()
    new = trades_repo.NewTrade(
        id=trade_id,
        open_client_order_id=client_order_id(trade_id, OrderAction.OPEN, 0),
        symbol=symbol,
        side=PositionSide.LONG,
        qty=Decimal(5),
        entry_price=Decimal(100),
        entry_at=now - age,
        stop_loss=Decimal(97),
        take_profit=Decimal(106),
        status=TradeStatus.PENDING_OPEN,
    )
    return trades_repo.insert_trade(db, new)


def test_a_pending_entry_younger_than_its_grace_stays_pending_and_an_older_one_is_cancelled(db: Database, sim) -> None:
    now = sim.market.now
    young_symbol, old_symbol = tradable_symbols(sim.market, 2)
    young = pending_entry(db, young_symbol, PENDING_GRACE - timedelta(seconds=30), now)
    old = pending_entry(db, old_symbol, PENDING_GRACE + timedelta(seconds=30), now)
    result = Reconciliation()
    resolve_pending_entries(db, make_broker(sim), result, now=now)
    assert trades_repo.get_trade(db, young.id).status is TradeStatus.PENDING_OPEN  # its order may still arrive
    assert trades_repo.get_trade(db, old.id).status is TradeStatus.CANCELLED  # the broker never got it
    assert (result.pending_waiting, result.pending_cancelled) == (1, 1)


@pytest.mark.parametrize(("ratio", "label"), [(Decimal(1) / 5, "1:5 reverse"), (Decimal(2), "2:1 forward")])
def test_a_split_like_drift_is_reported_and_the_trade_left_whole(db: Database, sim, ratio: Decimal, label) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=10)
    position = sim.market.book.positions[trade.symbol]
    position.qty = Decimal(10) * ratio
    position.avg_entry_price = trade.entry_price / ratio  # the cost basis unchanged, as a split leaves it
    result = reconcile_positions(db, make_broker(sim), now=sim.market.now, resolve_pending=False)
    assert trade.symbol in result.possible_splits, label
    assert trade.symbol not in result.repaired
    after = trades_repo.get_trade(db, trade.id)
    assert after.status is TradeStatus.OPEN and after.qty == Decimal(10)  # not cut to the broker's quantity
    assert adjustments_repo.adjustments(db, symbol=trade.symbol) == []
    assert not result.clean  # reported, so the check fails and alerts


def test_a_fractional_residue_at_the_broker_is_taken_into_its_trade(db: Database, sim) -> None:
    """The broker holds 10.4 where our trade holds 10 (a split's residue, a fractional fill): the 0.4 descends
    from the trade and is protected with it — the trade holds 10.4, with an audit row. A whole extra share is
    not ours to take: reported, left alone."""
    first, second = seed_positions(db, sim, tradable_symbols(sim.market, 2), qty=10)
    sim.market.book.positions[first.symbol].qty = Decimal("10.4")
    sim.market.book.positions[second.symbol].qty = Decimal(11)
    result = reconcile_positions(db, make_broker(sim), now=sim.market.now)
    assert trades_repo.get_trade(db, first.id).qty == Decimal("10.4")
    assert first.symbol in result.repaired
    assert trades_repo.get_trade(db, second.id).qty == Decimal(10)
    assert second.symbol in result.qty_mismatch and second.symbol not in result.repaired
