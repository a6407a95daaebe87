"""Second line of defence: broker-side protective orders, trailing stops, max-age exits, kill switch, daily loss."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.names import STOP_LOSS_JOB, TRADING_DAY_JOB
from trading_pipeline.domain.types import ExitReason, OrderAction, PositionSide, TradeStatus
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import current_trading_state, firing_alerts, set_trading_state
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

UNIVERSE = {"ops": {"universe": {"config": {"sample_size": 120}}}}


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=400) as simulator:
        yield simulator


def open_protected(database_url: str, sim, n: int = 3, **strategy):
    defs = pipeline_definitions(database_url, sim, max_open_positions=n, protective_orders=True, **strategy)
    day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert day.success and metadata(day, "entries")["opened"] == n
    return defs


def sells(sim) -> list:
    return [o for o in broker_orders(sim) if o.side == "sell"]


def test_gap_through_stop_while_the_pipeline_is_down(database_url: str, db: Database, sim) -> None:
    defs = open_protected(database_url, sim)
    trades = trades_repo.open_trades(db)
    assert all(t.protected and t.protection_client_order_id == t.open_client_order_id for t in trades)
    victim = sorted(trades, key=lambda t: t.symbol)[0]
    # Nothing runs for an hour; meanwhile the price gaps through the stop. The broker's own stop leg fills.
    sim.market.advance(timedelta(minutes=20))
    sim.market.gap(victim.symbol, -20)
    sim.market.advance(timedelta(minutes=40))
    assert victim.symbol not in sim.market.book.positions
    result = run_job(defs, STOP_LOSS_JOB)
    assert result.success, check_results(result)
    assert metadata(result, "positions")["closed_by_broker_orders"] == 1
    closed = trades_repo.get_trade(db, victim.id)
    assert closed is not None and closed.status is TradeStatus.CLOSED
    assert closed.close_reason is ExitReason.BROKER_STOP and closed.close_price is not None
    checks = check_results(result)
    assert checks["reconciliation_clean"] and checks["protective_orders_live"] and checks["stops_honoured"]
    assert [o.symbol for o in sells(sim) if o.status == "filled"] == [victim.symbol]  # one exit, the broker's
    assert metadata(result, "closes")["orders_submitted"] == 0  # the sweep sent nothing for it


def test_a_missing_protective_leg_is_recreated_exactly_once(database_url: str, db: Database, sim) -> None:
    defs = open_protected(database_url, sim, n=2)
    target = sorted(trades_repo.open_trades(db), key=lambda t: t.symbol)[0]
    stop_leg = next(o for o in broker_orders(sim) if o.symbol == target.symbol and o.type == "stop" and o.is_open)
    sim.market.cancel_order(stop_leg.id)  # someone cancels it by hand in the broker's UI
    first = run_job(defs, STOP_LOSS_JOB)
    assert first.success and metadata(first, "positions")["protection_recreated"] == 1
    second = run_job(defs, STOP_LOSS_JOB)
    assert second.success and metadata(second, "positions")["protection_recreated"] == 0
    assert metadata(second, "positions")["protection_verified"] == 2
    cid = client_order_id(target.id, OrderAction.STOP, 0)
    assert Counter(o.client_order_id for o in broker_orders(sim))[cid] == 1
    assert trades_repo.get_trade(db, target.id).protection_client_order_id == cid
    # The re-armed stop works: a gap now closes the position at the broker.
    sim.market.gap(target.symbol, -20)
    assert target.symbol not in sim.market.book.positions


def test_kill_switch_blocks_entries_but_not_closes(database_url: str, db: Database, sim) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=1)
    set_trading_state(db, halted=True, actor="ops", reason="incident review")
    defs = pipeline_definitions(database_url, sim, max_open_positions=5)
    day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert day.success
    entries = metadata(day, "entries")
    assert entries["orders_submitted"] == 0 and "halted by ops: incident review" in entries["skipped_reason"]
    sim.market.gap(trade.symbol, -10)
    sweep = run_job(defs, STOP_LOSS_JOB)
    assert sweep.success and metadata(sweep, "closes")["closed_stop_loss"] == 1
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED


def test_daily_loss_breach_halts_and_alerts(database_url: str, db: Database, sim) -> None:
    trades = seed_positions(db, sim, tradable_symbols(sim.market, 4), qty=50)
    for trade in trades:
        sim.market.gap(trade.symbol, -12)
    defs = pipeline_definitions(database_url, sim, max_daily_loss=100.0)
    sweep = run_job(defs, STOP_LOSS_JOB)
    assert sweep.success
    closes = metadata(sweep, "closes")
    assert closes["daily_loss_breached"] is True and closes["pnl_today"] < -100
    state = current_trading_state(db)
    assert state.halted and state.actor == "risk-limits" and "breached the limit of 100" in state.reason
    assert "risk:daily_loss" in {a.key for a in firing_alerts(db)}
    day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert metadata(day, "entries")["orders_submitted"] == 0


def test_trailing_stop_ratchets_up_never_down_then_fires(database_url: str, db: Database, sim) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    order = sim.market.submit_order(
        {"symbol": symbol, "qty": "5", "side": "buy", "type": "market", "time_in_force": "day"}
    )
    price = order.filled_avg_price
    trade = trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            symbol=symbol,
            side=PositionSide.LONG,
            qty=Decimal(5),
            entry_price=price,
            entry_at=sim.market.now,
            stop_loss=(price * Decimal("0.8")).quantize(Decimal("0.01")),
            trailing_pct=Decimal(5),
        ),
    )
    defs = pipeline_definitions(database_url, sim)
    marks = []
    for bid in (price * Decimal("1.10"), price * Decimal("1.06"), price * Decimal("1.08")):
        sim.market.set_price(symbol, bid, bid + Decimal("0.02"))
        assert run_job(defs, STOP_LOSS_JOB).success
        marks.append(trades_repo.get_trade(db, trade.id).high_water_mark)
    top = (price * Decimal("1.10")).quantize(Decimal("0.01"))
    assert marks[0] >= top - Decimal("0.01") and marks[1] == marks[0] and marks[2] == marks[0]  # never down
    sim.market.set_price(symbol, price * Decimal("1.03"), price * Decimal("1.03") + Decimal("0.02"))
    result = run_job(defs, STOP_LOSS_JOB)
    closed = trades_repo.get_trade(db, trade.id)
    assert result.success and closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.TRAILING_STOP


def test_max_age_exit_after_n_sessions(database_url: str, db: Database, sim) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    sim.market.submit_order({"symbol": symbol, "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"})
    old = datetime(2026, 11, 16, 15, 0, tzinfo=UTC)  # six sessions before the sim's 2026-11-24
    price = sim.market.book.positions[symbol].avg_entry_price
    trade = trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            symbol=symbol, side=PositionSide.LONG, qty=Decimal(1), entry_price=price, entry_at=old, stop_loss=price / 2
        ),
    )
    kept = run_job(pipeline_definitions(database_url, sim, max_age_trading_days=10), STOP_LOSS_JOB)
    assert kept.success and trades_repo.get_trade(db, trade.id).status is TradeStatus.OPEN
    aged = run_job(pipeline_definitions(database_url, sim, max_age_trading_days=5), STOP_LOSS_JOB)
    closed = trades_repo.get_trade(db, trade.id)
    assert aged.success and closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.MAX_AGE


def test_the_sweep_never_sells_shares_the_broker_does_not_hold(database_url: str, db: Database, sim) -> None:
    """A position closed outside the pipeline (by hand at the broker): selling again would open a short."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=3)
    sim.market.close_position(trade.symbol)
    sim.market.gap(trade.symbol, -15)
    before = len(sells(sim))
    result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    assert len(sells(sim)) == before  # nothing sent
    assert trade.symbol not in sim.market.book.positions  # and no short opened
    assert check_results(result)["reconciliation_clean"] is False  # the mismatch is loud
    # …and repaired to follow the broker's book, with its audit row: closed outside the pipeline.
    repaired = trades_repo.get_trade(db, trade.id)
    assert repaired.status is TradeStatus.CLOSED and repaired.close_reason is ExitReason.MANUAL
    assert [a.kind for a in adjustments_repo.adjustments(db, symbol=trade.symbol)] == ["closed_outside"]


def test_invalid_risk_settings_are_alerted_but_never_stop_the_sweep(database_url: str, db: Database, sim) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=1)
    sim.market.gap(trade.symbol, -10)
    defs = pipeline_definitions(database_url, sim, max_open_positions=-1, max_age_trading_days=0)
    sweep = run_job(defs, STOP_LOSS_JOB)
    assert sweep.success and trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED
    problem = metadata(sweep, "closes")["settings_problem"]
    assert "max_age_trading_days" in problem and "max_open_positions" in problem
    assert "config:strategy" in {a.key for a in firing_alerts(db)}
    day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert not day.success  # entries refuse to start with them
