"""The asset graph materialized through Dagster against the in-process sim broker, on SQLite and Postgres."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.names import STOP_LOSS_JOB, TRADING_DAY_JOB
from trading_pipeline.domain.types import ExitReason, OrderAction, OrderSide, TradeStatus
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import runs_repository as runs_repo
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
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=400) as simulator:
        yield simulator


def test_trading_day_then_stop_loss(database_url: str, db: Database, sim) -> None:
    defs = pipeline_definitions(database_url, sim, max_open_positions=8)
    day = run_job(
        defs,
        TRADING_DAY_JOB,
        partition_key=TEST_DAY,
        run_config={"ops": {"universe": {"config": {"sample_size": 120}}}},
    )
    assert day.success
    universe = metadata(day, "universe")
    assert universe["sample_size"] == 120 and "first_letter_histogram" in universe
    entries = metadata(day, "entries")
    assert entries["opened"] == 8 == entries["orders_submitted"]
    opened = trades_repo.open_trades(db)
    assert len(opened) == 8
    held = {p.symbol: p.qty for p in sim.market.book.positions.values()}
    assert held == {t.symbol: t.qty for t in opened}
    for trade in opened:
        assert trade.stop_loss < trade.entry_price < trade.take_profit

    victim = sorted(opened, key=lambda t: t.symbol)[0]
    sim.market.advance(timedelta(minutes=2))
    sim.market.gap(victim.symbol, -20)
    sweep = run_job(defs, STOP_LOSS_JOB)
    assert sweep.success, sweep
    closes = metadata(sweep, "closes")
    assert closes["closed_stop_loss"] >= 1 and closes["positions_checked"] == 8
    assert closes["db_checkouts_during_broker_calls"] == 0
    assert all(check_results(sweep).values()), check_results(sweep)
    closed = trades_repo.get_trade(db, victim.id)
    assert closed is not None and closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.STOP_LOSS
    assert victim.symbol not in sim.market.book.positions
    order = orders_repo.get_order(db, closed.close_client_order_id)
    assert order is not None and order.side is OrderSide.SELL and isinstance(order.raw["id"], str)
    # The decision run's JSON metadata holds the broker's order objects, UUIDs and all.
    with db.engine.connect() as conn:
        meta = conn.execute(sa.text("SELECT execution_meta FROM decision_runs WHERE kind = 'entries'")).scalar_one()
    meta = meta if isinstance(meta, dict) else __import__("json").loads(meta)
    assert len(meta["orders"]) == 8 and all(isinstance(o["id"], str) for o in meta["orders"])


def test_universe_rerun_is_idempotent_and_unbiased(database_url: str, db: Database, sim) -> None:
    defs = pipeline_definitions(database_url, sim)
    config = {"ops": {"universe": {"config": {"sample_size": 100}}}}
    job = defs.resolve_job_def(TRADING_DAY_JOB)
    first = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=config)
    second = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=config)
    assert first.success and second.success and job.name == TRADING_DAY_JOB
    assert metadata(first, "universe")["seed"] == metadata(second, "universe")["seed"]
    snapshot = runs_repo.get_universe_snapshot(db, __import__("datetime").date.fromisoformat(TEST_DAY))
    assert snapshot is not None and len(snapshot.symbols) == 100
    assert sorted(snapshot.symbols) != list(snapshot.symbols)  # shuffled, not the sorted head
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM universe_snapshots")).scalar() == 1
    all_symbols = sorted(a.symbol for a in sim.market.assets)
    assert snapshot.symbols != tuple(all_symbols[:100])


def test_no_connection_is_held_during_broker_calls_with_100_positions(database_url: str, db: Database, sim) -> None:
    symbols = tradable_symbols(sim.market, 100)
    trades = seed_positions(db, sim, symbols, qty=1)
    for trade in trades[::3]:
        sim.market.gap(trade.symbol, -10)
    defs = pipeline_definitions(database_url, sim)
    result = run_job(defs, STOP_LOSS_JOB)
    assert result.success
    closes = metadata(result, "closes")
    assert closes["positions_checked"] == 100
    assert closes["closed"] == len(trades[::3])
    assert closes["db_checkouts_during_broker_calls"] == 0
    assert check_results(result)["db_health"] is True
    assert metadata(result, "quotes")["quote_requests"] == 1  # 100 positions, one multi-symbol request


def test_the_monitor_catches_a_transaction_held_across_a_broker_call(db: Database, sim) -> None:
    """Negative control: the seed's shape (a transaction open while calling the broker) is counted."""
    from trading_pipeline.broker.guarded import GuardedBroker

    seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=1)
    broker = GuardedBroker(make_broker(sim), db.monitor.broker_call)
    with db.transaction() as session:
        session.execute(sa.select(sa.literal(1)))
        broker.latest_quotes(["AAA"])
    assert db.monitor.stats().checkouts_during_broker_calls == 1


@pytest.mark.postgres
def test_overlapping_sweeps_close_each_position_exactly_once(postgres_server_url: str, sim) -> None:
    from trading_pipeline_tests.conftest import _truncate_all

    _truncate_all(postgres_server_url)
    with Database(postgres_server_url) as setup:
        trades = seed_positions(setup, sim, tradable_symbols(sim.market, 40), qty=1)
    for trade in trades:
        sim.market.gap(trade.symbol, -10)
    barrier = threading.Barrier(2)
    results = []

    def sweep() -> None:
        with Database(postgres_server_url) as db:
            broker = make_broker(sim)
            barrier.wait()
            results.append(run_stop_loss_sweep(db, broker, run_id=threading.current_thread().name))

    threads = [threading.Thread(target=sweep, name=f"run-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.closed for r in results) == 40
    # A sweep that read a trade as open after the other had claimed it loses the claim; one that started later
    # never sees it. Either way: never a second close.
    assert sum(r.claim_lost for r in results) <= 40
    sells = [o for o in broker_orders(sim) if o.side == "sell"]
    assert len(sells) == 40
    assert max(Counter(o.client_order_id for o in sells).values()) == 1
    with Database(postgres_server_url) as db:
        assert trades_repo.open_trades(db) == [] and trades_repo.closing_trades(db) == []


def test_crash_after_submit_is_recorded_without_a_second_order(db: Database, sim) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=2)
    sim.market.gap(trade.symbol, -10)
    cid = client_order_id(trade.id, OrderAction.CLOSE, 0)
    # The crashed run: claimed and submitted, then died before recording.
    assert claims_repo.claim_for_close(
        db, trade.id, client_order_id=cid, reason=ExitReason.STOP_LOSS, trigger_price=trade.stop_loss, run_id="crashed"
    )
    sim.market.submit_order(
        {
            "symbol": trade.symbol,
            "qty": "2",
            "side": "sell",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": cid,
        }
    )
    result = run_stop_loss_sweep(db, make_broker(sim), run_id="next")
    assert result.leftovers_found == 1 and result.leftovers_closed == 1 and result.orders_submitted == 0
    closed = trades_repo.get_trade(db, trade.id)
    assert closed is not None and closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.STOP_LOSS
    assert len([o for o in broker_orders(sim) if o.side == "sell"]) == 1


def test_crash_before_submit_is_retried_once_after_the_grace(db: Database, sim) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=2)
    sim.market.gap(trade.symbol, -10)
    cid = client_order_id(trade.id, OrderAction.CLOSE, 0)
    assert claims_repo.claim_for_close(
        db,
        trade.id,
        client_order_id=cid,
        reason=ExitReason.STOP_LOSS,
        trigger_price=trade.stop_loss,
        run_id="crashed",
        now=sim.market.now,
    )
    broker = make_broker(sim)
    young = run_stop_loss_sweep(db, broker, run_id="too-soon", now=sim.market.now + timedelta(seconds=30))
    assert young.leftovers_found == 1 and young.leftovers_released == 0 and young.orders_submitted == 0
    later = run_stop_loss_sweep(db, broker, run_id="next", now=sim.market.now + timedelta(minutes=5))
    assert later.leftovers_released == 1 and later.closed == 1 and later.orders_submitted == 1
    sells = [o for o in broker_orders(sim) if o.side == "sell"]
    assert [o.client_order_id for o in sells] == [client_order_id(trade.id, OrderAction.CLOSE, 1)]
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED


def test_two_consecutive_runs_get_their_own_engine(database_url: str, db: Database, sim, monkeypatch) -> None:
    import trading_pipeline.resources.database as resource_module

    created: list[Database] = []
    disposed: list[Database] = []

    class RecordingDatabase(Database):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

        def dispose(self) -> None:
            disposed.append(self)
            super().dispose()

    monkeypatch.setattr(resource_module, "Database", RecordingDatabase)
    seed_positions(db, sim, tradable_symbols(sim.market, 5), qty=1)
    defs = pipeline_definitions(database_url, sim)
    assert run_job(defs, STOP_LOSS_JOB).success
    assert run_job(defs, STOP_LOSS_JOB).success
    assert len(created) == 2 and created[0] is not created[1]
    assert disposed == created


def test_stale_quote_is_flagged_and_fails_the_run_loudly(database_url: str, db: Database, sim) -> None:
    trades = seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=1)
    sim.market.stale(trades[0].symbol)
    sim.market.advance(timedelta(minutes=10))
    result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    assert not result.success  # a blocking ERROR check: the run fails, so run-failure alerts see it
    assert check_results(result)["every_position_judged"] is False
    closes = metadata(result, "closes")
    assert (
        trades[0].symbol in closes["flagged_positions"].text
        if hasattr(closes["flagged_positions"], "text")
        else trades[0].symbol in str(closes["flagged_positions"])
    )
    assert trades_repo.get_trade(db, trades[0].id).status is TradeStatus.OPEN  # not closed on a stale price


def test_entries_without_universe_or_buying_power_place_no_orders(database_url: str, db: Database) -> None:
    with running_sim(realtime=False, n_symbols=200, initial_cash=Decimal(0)) as poor:
        defs = pipeline_definitions(database_url, poor)
        result = run_job(
            defs,
            TRADING_DAY_JOB,
            partition_key=TEST_DAY,
            run_config={"ops": {"universe": {"config": {"sample_size": 50}}}},
        )
        assert result.success
        entries = metadata(result, "entries")
        assert entries["orders_submitted"] == 0 and "buying power" in entries["skipped_reason"]
        assert broker_orders(poor) == []
