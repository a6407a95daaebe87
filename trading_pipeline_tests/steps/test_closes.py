"""The stop-loss sweep (steps/closes.py): which age limit applies, a close that raises fails the sweep after the
other symbols' closes are sent and recorded, and a split-like jump in the broker's quantity is never sold on."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from trading_pipeline.domain.types import TradeStatus
from trading_pipeline.steps.closes import _tighter, run_stop_loss_sweep
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import broker_orders, seed_positions
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def sells(sim, symbol: str) -> list:
    return [o for o in broker_orders(sim) if o.side == "sell" and o.symbol == symbol]


def test_the_tighter_of_the_strategy_and_configured_max_age_applies() -> None:
    assert _tighter(2, 5) == 2  # the strategy's own limit is tighter
    assert _tighter(5, 2) == 2  # the configured one is tighter
    assert _tighter(3, None) == 3 and _tighter(None, 4) == 4
    assert _tighter(None, None) is None


@pytest.mark.parametrize("workers", [1, 8])
def test_a_close_that_raises_fails_the_sweep_after_the_other_closes_are_sent_and_recorded(
    db: Database, sim, monkeypatch, workers: int
) -> None:
    """The DB call that claims one symbol's trade raises: the other symbols are still sold and recorded closed,
    and the sweep raises that error instead of returning as if the run were clean."""
    trades = seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=4)
    for trade in trades:
        sim.market.gap(trade.symbol, -15)
    broken = trades[1]
    real_claim = claims_repo.claim_for_close

    def claim_failing_for_one(db_, trade_id, **kwargs):
        if trade_id == broken.id:
            raise sa.exc.OperationalError("UPDATE trades SET status", {}, Exception("database is locked"))
        return real_claim(db_, trade_id, **kwargs)

    monkeypatch.setattr(claims_repo, "claim_for_close", claim_failing_for_one)
    with pytest.raises(sa.exc.OperationalError, match="database is locked"):
        run_stop_loss_sweep(
            db, make_broker(sim), run_id="r1", now=sim.market.now, max_quote_age=None, close_concurrency=workers
        )
    for trade in (trades[0], trades[2]):
        assert [o.filled_qty for o in sells(sim, trade.symbol)] == [Decimal(4)]
        assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED
    assert sells(sim, broken.symbol) == []
    assert trades_repo.get_trade(db, broken.id).status is TradeStatus.OPEN  # the next run closes it


def test_a_possible_split_is_not_sold_at_the_old_stop(db: Database, sim) -> None:
    """The broker holds 2× our shares at half our price (a 2:1 split whose corporate action is not known yet):
    the halved quote is below the old stop, but the sweep sends nothing and reports the symbol."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=10)
    position = sim.market.book.positions[trade.symbol]
    position.qty = Decimal(20)
    position.avg_entry_price = trade.entry_price / 2
    sim.market.gap(trade.symbol, -50)  # the price a 2:1 split shows
    result = run_stop_loss_sweep(db, make_broker(sim), run_id="r1", now=sim.market.now, max_quote_age=None)
    assert result.exits_decided == 1  # the halved price does cross the old stop …
    assert trade.symbol in result.split_suspects  # … but it is reported as a possible split
    assert sells(sim, trade.symbol) == [] and result.orders_submitted == 0
    assert sim.market.book.positions[trade.symbol].qty == Decimal(20)
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.OPEN


def test_a_quantity_change_without_the_split_price_is_a_gap_and_sells(db: Database, sim) -> None:
    """The other side of the split test: the broker's quantity unchanged, the same gap is a real gap and sells."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=10)
    sim.market.gap(trade.symbol, -50)
    result = run_stop_loss_sweep(db, make_broker(sim), run_id="r1", now=sim.market.now, max_quote_age=None)
    assert result.split_suspects == {}
    assert [o.filled_qty for o in sells(sim, trade.symbol)] == [Decimal(10)]
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED
