"""Issue 18: a stock split re-bases positions and stops, never triggers them — through the real stop-loss job
against the sim broker, which applies the split at the ex-date's beginning-of-day process as Alpaca does."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import dagster as dg
import pytest

from trading_pipeline.automation.registry import AUTOMATION
from trading_pipeline.checks.registry import ALL_SPECS
from trading_pipeline.domain.corporate_actions import rebased_price
from trading_pipeline.domain.names import PREFLIGHT_JOB, STOP_LOSS_JOB, TRADING_DAY_JOB
from trading_pipeline.domain.types import ExitReason, TradeStatus
from trading_pipeline.monitoring.status import build_status, render_status
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import (
    TEST_DAY,
    broker_orders,
    check_results,
    metadata,
    pipeline_definitions,
    run_job,
    seed_positions,
)
from trading_pipeline_tests.sim_fixtures import running_sim, tradable_symbols

EX_DATE = date(2026, 11, 25)  # the session after the sim's start (Tuesday 24 November 2026, 10:00 New York)
EX_DATE_10AM = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
EX_DATE_PREMARKET = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # 09:00 New York, after the BOD process


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=400) as simulator:
        yield simulator


def sells(sim, symbol: str | None = None) -> list:
    return [o for o in broker_orders(sim) if o.side == "sell" and (symbol is None or o.symbol == symbol)]


def held(sim, symbol: str) -> Decimal:
    position = sim.market.book.positions.get(symbol)
    return Decimal(0) if position is None else position.qty


def test_forward_and_reverse_splits_rebase_and_sell_nothing(database_url: str, db: Database, sim) -> None:
    with dg.instance_for_test() as instance:  # `status` reads schedule state: a real instance
        _forward_and_reverse(database_url, db, sim, instance)


def _forward_and_reverse(database_url: str, db: Database, sim, instance: dg.DagsterInstance) -> None:
    forward, reverse = seed_positions(db, sim, tradable_symbols(sim.market, 2), qty=135)
    before = {t.symbol: t for t in (forward, reverse)}
    sim.market.split(forward.symbol, 2, 1, EX_DATE)
    sim.market.split(reverse.symbol, 1, 5, EX_DATE)  # 135 / 5 = 27 shares exactly
    defs = pipeline_definitions(database_url, sim)
    sim.market.advance_to(EX_DATE_10AM)
    assert held(sim, forward.symbol) == 270 and held(sim, reverse.symbol) == 27

    result = run_job(defs, STOP_LOSS_JOB, instance=instance)
    assert result.success, check_results(result)
    assert sells(sim) == []  # the price "halved" (or x5), nothing moved: never a stop_loss on it
    for symbol, ratio in ((forward.symbol, Decimal(2)), (reverse.symbol, Decimal("0.2"))):
        [trade] = [t for t in trades_repo.open_trades(db) if t.symbol == symbol]
        old = before[symbol]
        assert trade.qty == old.qty * ratio
        assert trade.stop_loss == rebased_price(old.stop_loss, ratio)
        assert trade.take_profit == rebased_price(old.take_profit, ratio)
        assert trade.entry_price == rebased_price(old.entry_price, ratio)
        [audit] = adjustments_repo.adjustments(db, symbol=symbol)
        assert audit.kind == adjustments_repo.SPLIT_REBASE
    positions = metadata(result, "positions")
    assert positions["split_rebased"] == 2 and positions["corporate_actions_read"] is True
    checks = check_results(result)
    assert checks["levels_match_broker"] is True and checks["reconciliation_clean"] is True

    status = render_status(
        build_status(
            now=EX_DATE_10AM,
            day=EX_DATE,
            instance=instance,
            instance_problem=None,
            db=db,
            db_problem=None,
            automation=AUTOMATION,
            check_specs=ALL_SPECS,
        )
    )
    assert "read this session, 2 split re-base(s) applied; levels_match_broker passes" in status

    # A second run the same session re-bases nothing again (once per action).
    again = run_job(defs, STOP_LOSS_JOB)
    assert again.success and sells(sim) == []
    assert len(adjustments_repo.adjustments(db, symbol=forward.symbol)) == 1


def test_a_real_gap_below_the_rebased_stop_sells_what_the_broker_holds(database_url: str, db: Database, sim) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=135)
    sim.market.split(trade.symbol, 2, 1, EX_DATE)
    defs = pipeline_definitions(database_url, sim)
    sim.market.advance_to(EX_DATE_10AM)
    assert run_job(defs, STOP_LOSS_JOB).success and sells(sim) == []

    sim.market.gap(trade.symbol, -20)  # 20 % below the re-based entry: through the re-based stop (-3 %)
    result = run_job(defs, STOP_LOSS_JOB)
    assert result.success, check_results(result)
    assert [o.qty for o in sells(sim, trade.symbol)] == [Decimal(270)]
    assert held(sim, trade.symbol) == 0
    closed = trades_repo.get_trade(db, trade.id)
    assert closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.STOP_LOSS
    assert closed.qty == Decimal(270)


def test_a_reverse_split_fraction_is_cash_in_lieu_and_the_trade_follows_the_broker(
    database_url: str, db: Database, sim
) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=103)
    split = sim.market.split(trade.symbol, 1, 5, EX_DATE)
    defs = pipeline_definitions(database_url, sim)
    sim.market.advance_to(EX_DATE_10AM)
    assert held(sim, trade.symbol) == 20 and split.cash_in_lieu > 0  # 20.6 shares: 0.6 paid in cash

    result = run_job(defs, STOP_LOSS_JOB)
    assert result.success, check_results(result)
    assert sells(sim) == []
    [rebased] = trades_repo.open_trades(db)
    assert rebased.qty == Decimal(20)
    assert check_results(result)["reconciliation_clean"] is True


def test_a_real_50_percent_gap_with_an_unchanged_quantity_sells_at_once(database_url: str, db: Database, sim) -> None:
    """No split: the broker's quantity did not move, so a price that halves is a real gap."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=135)
    defs = pipeline_definitions(database_url, sim)
    sim.market.advance_to(EX_DATE_10AM)
    sim.market.gap(trade.symbol, -50)
    result = run_job(defs, STOP_LOSS_JOB)
    assert result.success, check_results(result)
    assert [o.qty for o in sells(sim, trade.symbol)] == [Decimal(135)]
    assert held(sim, trade.symbol) == 0
    assert trades_repo.get_trade(db, trade.id).close_reason is ExitReason.STOP_LOSS
    assert metadata(result, "closes")["possible_splits_not_sold"] == "_(none)_"  # the guard let it through


UNIVERSE = {"ops": {"universe": {"config": {"sample_size": 120}}}}


def live_exits(sim, symbol: str) -> list:
    return [o for o in broker_orders(sim) if o.symbol == symbol and o.side == "sell" and o.is_open]


def test_protected_positions_are_rebased_before_the_open_and_protection_recreated(
    database_url: str, db: Database, sim
) -> None:
    """Alpaca leaves bracket and OCO legs as they are on a split (DNR/DNC). Left alone, the forward split's stop
    leg fires at the open and the reverse split's take-profit sells the pre-split quantity. The pre-market run
    re-bases the trades and replaces the legs at the new prices and quantities; the open then sells nothing."""
    defs = pipeline_definitions(database_url, sim, max_open_positions=2, protective_orders=True)
    day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert day.success and metadata(day, "entries")["opened"] == 2
    forward, reverse = sorted(trades_repo.open_trades(db), key=lambda t: t.symbol)
    for trade in (forward, reverse):  # no real move through the levels for the rest of the first day
        sim.market.stale(trade.symbol)
    sim.market.split(forward.symbol, 2, 1, EX_DATE)
    sim.market.split(reverse.symbol, 1, 5, EX_DATE)
    sim.market.advance_to(EX_DATE_PREMARKET)
    for trade in (forward, reverse):
        sim.market.resume(trade.symbol)
    assert held(sim, forward.symbol) == forward.qty * 2
    old_stops = {o.id for t in (forward, reverse) for o in live_exits(sim, t.symbol)}

    with dg.instance_for_test() as instance:  # the go/no-go reads schedule state: a real instance
        preflight = run_job(defs, PREFLIGHT_JOB, instance=instance)
    assert metadata(preflight, "preflight")["split_rebased"] == 2
    for before in (forward, reverse):
        after = trades_repo.get_trade(db, before.id)
        assert after.qty == held(sim, before.symbol)
        legs = live_exits(sim, before.symbol)
        assert not {o.id for o in legs} & old_stops  # the legs at the old prices are gone…
        assert {(o.type, o.stop_price or o.limit_price, o.qty) for o in legs} == {  # …replaced at the new ones
            ("stop", after.stop_loss, after.qty),
            ("limit", after.take_profit, after.qty),
        }

    sim.market.advance_to(EX_DATE_10AM)  # through the open: nothing stale left to fire
    result = run_job(defs, STOP_LOSS_JOB)
    assert result.success, check_results(result)
    assert [o for o in sells(sim) if o.filled_qty > 0] == []
    checks = check_results(result)
    assert checks["levels_match_broker"] and checks["reconciliation_clean"] and checks["protective_orders_live"]

    sim.market.gap(forward.symbol, -20)  # a real gap through the re-based stop: the broker's stop leg sells
    result = run_job(defs, STOP_LOSS_JOB)
    assert result.success, check_results(result)
    assert [o.filled_qty for o in sells(sim, forward.symbol) if o.filled_qty > 0] == [forward.qty * 2]
    assert held(sim, forward.symbol) == 0
    assert trades_repo.get_trade(db, forward.id).status is TradeStatus.CLOSED
