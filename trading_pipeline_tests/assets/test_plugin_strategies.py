"""Plug-in strategies through Dagster against the sim broker: a misbehaving strategy fails `entries` only,
alerts, and never stops the sweeps; every strategy is held to the same risk limits and kill switch."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from trading_pipeline.automation.sensors import run_failure_alert_sensor
from trading_pipeline.domain.names import STOP_LOSS_JOB, TRADING_DAY_JOB
from trading_pipeline.domain.types import ExitReason, PositionSide, TradeStatus
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import firing_alerts, set_trading_state
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import (
    TEST_DAY,
    broker_orders,
    metadata,
    pipeline_definitions,
    run_job,
    seed_positions,
)
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols
from trading_pipeline_tests.strategy_plugins import PATH, GreedyStrategy

UNIVERSE = {"ops": {"universe": {"config": {"sample_size": 60}}}}


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=300) as simulator:
        yield simulator


def step_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        event.step_key: event.is_step_success
        for event in result.all_events
        if event.is_step_success or event.is_step_failure
    }


def entries_meta(db: Database) -> dict:
    with db.engine.connect() as conn:
        meta = conn.execute(sa.text("SELECT execution_meta FROM decision_runs WHERE kind = 'entries'")).scalar_one()
    return meta if isinstance(meta, dict) else json.loads(meta)


@pytest.mark.parametrize(
    ("plugin", "words"),
    [
        ("RaisingStrategy", "strategy 'raising' raised ZeroDivisionError: my signal divided by zero volume"),
        ("StopAboveAskStrategy", "strategy 'stop_above_ask' returned 1 invalid intent(s)"),
    ],
)
def test_a_misbehaving_strategy_fails_entries_only_alerts_and_the_sweeps_go_on(
    database_url: str, db: Database, sim, plugin: str, words: str
) -> None:
    [held] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=3)
    orders_before = len(broker_orders(sim))
    defs = pipeline_definitions(database_url, sim, name=f"{PATH}:{plugin}", protective_orders=True)
    instance = dg.DagsterInstance.ephemeral()
    day = run_job(defs, TRADING_DAY_JOB, instance=instance, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert not day.success
    assert step_outcomes(day) == {"universe": True, "quotes": True, "entries": False}
    failure = next(e for e in day.all_events if e.is_step_failure)
    line = failure.step_failure_data.error.message
    assert words in line and "nothing was traded, stop-losses keep running" in line
    assert "\n" not in line.strip()
    assert len(broker_orders(sim)) == orders_before  # nothing sent
    assert trades_repo.count_trades_by_status(db)[TradeStatus.PENDING_OPEN] == 0
    recorded = entries_meta(db)["strategy_error"]
    assert words in recorded["error"]
    if plugin == "RaisingStrategy":
        assert "ZeroDivisionError" in recorded["traceback"] and "strategy_plugins.py" in recorded["traceback"]

    # The run's failure reaches a person with that one line.
    alerts = {"alerts": AlertsResource(), "database": TradingDatabase(url=database_url)}
    run_failure = next(e for e in day.all_events if e.event_type_value == "PIPELINE_FAILURE")
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=run_failure,
        dagster_instance=instance,
        dagster_run=day.dagster_run,
        resources=alerts,
    ) as context:
        run_failure_alert_sensor(context.for_run_failure())
    alert = {a.key: a for a in firing_alerts(db)}[f"run_failure:{TRADING_DAY_JOB}"]
    assert words in alert.message

    # And protection goes on, with the same broken strategy configured.
    sim.market.gap(held.symbol, -15)
    sweep = run_job(defs, STOP_LOSS_JOB, instance=instance)
    assert sweep.success
    assert trades_repo.get_trade(db, held.id).status is TradeStatus.CLOSED


def test_a_strategy_that_does_not_load_fails_the_trading_day_at_its_start_and_alerts_the_line(
    database_url: str, db: Database, sim
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    defs = pipeline_definitions(database_url, sim, name="no_such_package.signals:Strategy")
    day = run_job(defs, TRADING_DAY_JOB, instance=instance, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert not day.success and step_outcomes(day) == {}
    run_failure = next(e for e in day.all_events if e.event_type_value == "PIPELINE_FAILURE")
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=run_failure,
        dagster_instance=instance,
        dagster_run=day.dagster_run,
        resources={"alerts": AlertsResource(), "database": TradingDatabase(url=database_url)},
    ) as context:
        run_failure_alert_sensor(context.for_run_failure())
    [alert] = firing_alerts(db)
    assert "entry strategy 'no_such_package.signals:Strategy': importing module" in alert.message
    assert "pip install -e" in alert.message


def test_every_strategy_is_held_to_the_risk_limits(database_url: str, db: Database, sim) -> None:
    """A strategy asking for a million shares of everything gets what the limits allow, in whole shares."""
    defs = pipeline_definitions(
        database_url,
        sim,
        name=f"{PATH}:GreedyStrategy",
        params='{"qty": 1000000}',
        max_open_positions=20,
        max_notional_per_position=2000.0,
        max_total_notional=50000.0,
        max_daily_notional=7000.0,
        protective_orders=True,
    )
    day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert day.success, day
    entries = metadata(day, "entries")
    trades = trades_repo.open_trades(db)
    notionals = [t.qty * t.entry_price for t in trades]
    assert 4 <= len(trades) <= 20  # 7,000 a day at most 2,000 each: at least four positions
    assert all(n <= Decimal(2000) for n in notionals) and sum(notionals) <= Decimal(7000)
    assert all(t.qty == t.qty.to_integral_value() and t.max_age_trading_days == 3 for t in trades)
    assert "max_notional_per_position" in entries["capped_by_risk_limits"]
    assert entries["strategy"] == "greedy"
    # The orders Alpaca gets are whole-share brackets: no notional, nothing fractional, GTC legs.
    buys = [o for o in broker_orders(sim) if o.side == "buy" and o.order_class == "bracket"]
    assert len(buys) == len(trades)
    assert all(
        o.qty == o.qty.to_integral_value() and getattr(o, "notional", None) is None and o.time_in_force == "gtc"
        for o in buys
    )
    # A second run the same day: the daily notional already spent is counted, so nothing more fits.
    again = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert again.success and metadata(again, "entries")["opened"] == 0
    assert "max_daily_notional" in metadata(again, "entries")["dropped_by_risk_limits"]


def test_halted_is_reduce_only_for_every_strategy(database_url: str, db: Database, sim) -> None:
    GreedyStrategy.calls = 0
    set_trading_state(db, halted=True, actor="ops", reason="strategy review")
    defs = pipeline_definitions(database_url, sim, name=f"{PATH}:GreedyStrategy", params='{"notional": 500}')
    day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert day.success
    assert "halted by ops: strategy review" in metadata(day, "entries")["skipped_reason"]
    assert GreedyStrategy.calls == 0 and trades_repo.open_trades(db) == []  # not even asked
    assert [o for o in broker_orders(sim) if o.side == "buy"] == []


def test_the_daily_loss_breaker_stops_a_plug_in_too(database_url: str, db: Database, sim) -> None:
    GreedyStrategy.calls = 0
    for trade in seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=50):
        sim.market.gap(trade.symbol, -10)
    defs = pipeline_definitions(
        database_url, sim, name=f"{PATH}:GreedyStrategy", params='{"notional": 500}', max_daily_loss=100.0
    )
    day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert day.success
    assert "daily loss" in metadata(day, "entries")["skipped_reason"] and GreedyStrategy.calls == 0


def test_a_strategys_max_age_closes_its_position_even_without_a_configured_one(db: Database, sim) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    sim.market.submit_order({"symbol": symbol, "qty": "2", "side": "buy", "type": "market", "time_in_force": "day"})
    price = sim.market.book.positions[symbol].avg_entry_price
    trade = trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            symbol=symbol,
            side=PositionSide.LONG,
            qty=Decimal(2),
            entry_price=price,
            entry_at=datetime(2026, 11, 20, 15, 0, tzinfo=UTC),  # two sessions before the sim's 2026-11-24
            stop_loss=price / 2,
            max_age_trading_days=2,
        ),
    )
    result = run_stop_loss_sweep(db, make_broker(sim), run_id=None, now=sim.market.now)
    closed = trades_repo.get_trade(db, trade.id)
    assert result.closes_by_reason == {ExitReason.MAX_AGE.value: 1}
    assert closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.MAX_AGE


def test_the_strategy_and_its_params_can_be_chosen_per_run_in_the_run_config(
    database_url: str, db: Database, sim
) -> None:
    defs = pipeline_definitions(database_url, sim, max_open_positions=2)  # momentum by default
    chosen = {"resources": {"strategy": {"config": {"name": f"{PATH}:GreedyStrategy", "params": '{"notional": 400}'}}}}
    day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config={**UNIVERSE, **chosen})
    assert day.success, day
    assert metadata(day, "entries")["strategy"] == "greedy"
    assert all(t.strategy == "greedy" and t.qty * t.entry_price <= 400 for t in trades_repo.open_trades(db))
    refused = {"resources": {"strategy": {"config": {"params": '{"lookback_days": 1}'}}}}
    bad = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config={**UNIVERSE, **refused})
    assert not bad.success and step_outcomes(bad) == {}  # refused at the start, before the universe
