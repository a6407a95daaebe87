"""Stop-losses converge on the broker's real book (issue 14, cases 1–8), through the real stop-loss job
against the sim broker behaving as Alpaca documents: quantity drift, outside orders, bracket legs `held`
and absent from open listings, an endpoint failing four times in a row, entries outside a session, a close
whose retries are exhausted, a late-filling bracket closed by its own stop, partial fills."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.names import STOP_LOSS_JOB, TRADING_DAY_JOB
from trading_pipeline.domain.strategy import price_level
from trading_pipeline.domain.types import ExitReason, OrderAction, PositionSide, TradeStatus
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import firing_alerts
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


def sells(sim, symbol: str | None = None) -> list:
    return [o for o in broker_orders(sim) if o.side == "sell" and (symbol is None or o.symbol == symbol)]


def held(sim, symbol: str) -> Decimal:
    position = sim.market.book.positions.get(symbol)
    return Decimal(0) if position is None else position.qty


def test_case1_drift_sells_what_the_broker_holds_and_repairs_the_db(database_url: str, db: Database, sim) -> None:
    """The DB says 55 shares, the broker holds 27: after a gap below the stop, one sell of 27 — not 0 sells."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=55)
    sim.market.book.positions[trade.symbol].qty = Decimal(27)  # shares gone outside the pipeline
    sim.market.gap(trade.symbol, -15)
    result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    assert [o.qty for o in sells(sim, trade.symbol)] == [Decimal(27)]
    assert held(sim, trade.symbol) == 0  # flat: never a short
    assert check_results(result)["reconciliation_clean"] is False  # the divergence is loud…
    assert "DB expects 55, broker holds 27" in str(metadata(result, "positions")["mismatches"])
    kinds = [a.kind for a in adjustments_repo.adjustments(db, symbol=trade.symbol)]
    assert kinds == ["qty_drift"]  # …and repaired with its audit row
    closed = trades_repo.get_trade(db, trade.id)
    assert closed.status is TradeStatus.CLOSED and closed.qty == Decimal(27)


def test_case2_an_outside_order_holding_the_shares_is_cancelled_then_the_stop_sells(
    database_url: str, db: Database, sim
) -> None:
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
    result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    assert result.success, check_results(result)
    assert sim.market.book.orders[outside.id].status == "canceled"
    assert held(sim, trade.symbol) == 0
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED
    alert = next(a for a in firing_alerts(db) if a.key.startswith("closes:outside_orders"))
    assert "placed-in-the-web-app-1" in alert.message  # the person is told whose order was cancelled


def test_case3_held_bracket_legs_count_as_protection_and_are_not_resubmitted(
    database_url: str, db: Database, sim
) -> None:
    defs = pipeline_definitions(database_url, sim, max_open_positions=2, protective_orders=True)
    day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
    assert day.success and metadata(day, "entries")["opened"] == 2
    legs = [o for o in broker_orders(sim) if o.parent_id is not None]
    assert {o.status for o in legs if o.type == "stop"} == {"held"}  # as Alpaca keeps a filled bracket's stop
    before = len(broker_orders(sim))
    for _ in range(3):
        sim.market.advance(timedelta(minutes=2))
        result = run_job(defs, STOP_LOSS_JOB)
        assert result.success and check_results(result)["protective_orders_live"], metadata(result, "positions")
        assert metadata(result, "positions")["protection_recreated"] == 0
    assert len(broker_orders(sim)) == before  # no resubmission loop
    stop_ids = [cid for t in trades_repo.open_trades(db) for cid in orders_repo.order_client_ids_for_trade(db, t.id)]
    assert not [cid for cid in stop_ids if "-stop-" in cid]


def test_case3_the_sweeps_own_close_cancels_the_held_legs_first(database_url: str, db: Database, sim) -> None:
    defs = pipeline_definitions(database_url, sim, max_open_positions=1, protective_orders=True, trailing_stop_pct=1)
    assert run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE).success
    [trade] = trades_repo.open_trades(db)
    # The trailing stop (the sweep's, not the broker's) triggers: the high-water mark rises, then the price dips.
    sim.market.set_price(trade.symbol, trade.entry_price * Decimal("1.04"), trade.entry_price * Decimal("1.041"))
    assert run_job(defs, STOP_LOSS_JOB).success
    sim.market.set_price(trade.symbol, trade.entry_price * Decimal("1.02"), trade.entry_price * Decimal("1.021"))
    result = run_job(defs, STOP_LOSS_JOB)
    assert result.success, metadata(result, "closes")["failures"]
    closed = trades_repo.get_trade(db, trade.id)
    assert closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.TRAILING_STOP
    assert held(sim, trade.symbol) == 0
    # A leg replaced on the way (the broker stop followed the trailing level) ends `replaced`, as at Alpaca.
    assert all(o.status in ("canceled", "filled", "replaced") for o in broker_orders(sim) if o.symbol == trade.symbol)


@pytest.mark.parametrize("route", ["GET /v2/positions", "GET /v2/orders", "GET /v2/clock"])
def test_case4_four_500s_on_one_endpoint_never_block_the_close(
    database_url: str, db: Database, sim, route: str, monkeypatch
) -> None:
    # Without the broker's clock the calendar is asked at this machine's time: here, the simulated session's.
    monkeypatch.setattr("trading_pipeline.steps.clock.wall_clock", lambda: sim.market.now)
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=5)
    sim.market.gap(trade.symbol, -15)
    sim.faults.fail_next("500", count=1000, route=route)  # down for the whole run
    result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    sim.faults.clear()
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED, metadata(result, "closes")["failures"]
    assert held(sim, trade.symbol) == 0
    assert "closes" in {node for node in (e.step_key for e in result.all_events if e.is_step_success)}
    if route == "GET /v2/clock":
        assert metadata(result, "closes")["clock_source"] == "exchange calendar"
    if route == "GET /v2/positions":
        assert check_results(result)["reconciliation_clean"] is False  # the outage is a failed check


@pytest.mark.parametrize(
    "moment", [datetime(2026, 11, 24, 22, 0, tzinfo=UTC), datetime(2026, 11, 26, 16, 0, tzinfo=UTC)]
)
def test_case5_no_entries_outside_a_session(database_url: str, db: Database, moment: datetime) -> None:
    """After the close (broker clock closed) and on Thanksgiving (no NYSE session): nothing bought."""
    with running_sim(realtime=False, n_symbols=400, start=moment) as sim:
        defs = pipeline_definitions(database_url, sim, max_open_positions=3)
        day = run_job(defs, TRADING_DAY_JOB, partition_key=TEST_DAY, run_config=UNIVERSE)
        assert not [o for o in broker_orders(sim) if o.side == "buy"]
        reason = metadata(day, "entries")["skipped_reason"]
        assert "market closed" in reason or "calendar" in reason, reason


def test_case6_a_close_whose_retries_are_exhausted_fails_the_run_and_is_retried(
    database_url: str, db: Database, sim
) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=5)
    sim.market.gap(trade.symbol, -15)
    sim.faults.fail_next("503", count=4, route="POST /v2/orders")  # every attempt of the close submit
    defs = pipeline_definitions(database_url, sim)
    failed = run_job(defs, STOP_LOSS_JOB)
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSING
    assert check_results(failed)["no_position_beyond_stop"] is False  # a closing row with no live order
    assert not failed.success  # blocking: the run fails, so the failure sensor alerts within this run
    sim.market.advance(timedelta(minutes=2))
    retried = run_job(defs, STOP_LOSS_JOB)
    assert retried.success, check_results(retried)
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED
    assert len([o for o in sells(sim, trade.symbol) if o.status == "filled"]) == 1


def test_case7_a_late_filling_bracket_closed_by_its_own_stop_is_recorded(database_url: str, db: Database) -> None:
    """The bracket is queued before the open (accepted), fills at the open, and its stop leg fills on a gap —
    all before the next stop-loss run. That run records the broker's close; nothing stays beyond its stop."""
    before_open = datetime(2026, 11, 24, 14, 20, tzinfo=UTC)
    with running_sim(realtime=False, n_symbols=400, start=before_open) as sim:
        symbol = tradable_symbols(sim.market, 1)[0]
        price = sim.market.last_price(symbol)
        stop, target = price_level(price, Decimal(3), up=False), price_level(price, Decimal(6), up=True)
        trade = trades_repo.insert_trade(
            db,
            trades_repo.NewTrade(
                symbol=symbol,
                side=PositionSide.LONG,
                qty=Decimal(4),
                entry_price=price,
                entry_at=sim.market.now,
                stop_loss=stop,
                take_profit=target,
                status=TradeStatus.PENDING_OPEN,
                open_client_order_id=None,
                protected=True,
            ),
        )
        cid = client_order_id(trade.id, OrderAction.OPEN)
        with db.transaction() as session:  # the entries step writes the id before it sends the order
            from trading_pipeline.store.models import Trade

            row = session.get(Trade, trade.id)
            row.open_client_order_id = row.protection_client_order_id = cid
        order = sim.market.submit_order(
            {
                "symbol": symbol,
                "qty": "4",
                "side": "buy",
                "type": "market",
                "time_in_force": "gtc",
                "order_class": "bracket",
                "client_order_id": cid,
                "take_profit": {"limit_price": str(target)},
                "stop_loss": {"stop_price": str(stop)},
            }
        )
        assert order.status == "accepted"  # queued out of hours
        sim.market.advance(timedelta(minutes=15))  # the open: the entry fills
        sim.market.advance(timedelta(minutes=5))
        sim.market.gap(symbol, -20)  # its own stop leg fills
        sim.market.advance(timedelta(minutes=1))
        assert held(sim, symbol) == 0
        result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
        recorded = trades_repo.get_trade(db, trade.id)
        assert recorded.status is TradeStatus.CLOSED and recorded.close_reason is ExitReason.BROKER_STOP
        checks = check_results(result)
        assert checks["reconciliation_clean"] and checks["no_position_beyond_stop"], metadata(result, "positions")


def test_case7_without_brackets_a_late_fill_is_resolved_then_closed(database_url: str, db: Database) -> None:
    before_open = datetime(2026, 11, 24, 14, 20, tzinfo=UTC)
    with running_sim(realtime=False, n_symbols=400, start=before_open) as sim:
        symbol = tradable_symbols(sim.market, 1)[0]
        price = sim.market.last_price(symbol)
        trade_id = trades_repo.insert_trade(
            db,
            trades_repo.NewTrade(
                symbol=symbol,
                side=PositionSide.LONG,
                qty=Decimal(4),
                entry_price=price,
                entry_at=sim.market.now,
                stop_loss=price_level(price, Decimal(3), up=False),
                status=TradeStatus.PENDING_OPEN,
            ),
        ).id
        cid = client_order_id(trade_id, OrderAction.OPEN)
        with db.transaction() as session:
            from trading_pipeline.store.models import Trade

            session.get(Trade, trade_id).open_client_order_id = cid
        sim.market.submit_order(
            {
                "symbol": symbol,
                "qty": "4",
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
                "client_order_id": cid,
            }
        )
        sim.market.advance(timedelta(minutes=20))  # fills at the open
        sim.market.gap(symbol, -15)
        result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
        assert metadata(result, "positions")["pending_entries_filled"] == 1  # the resolution this test guards
        closed = trades_repo.get_trade(db, trade_id)
        assert closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.STOP_LOSS
        assert held(sim, symbol) == 0


def test_case8_partial_fills_of_a_close_are_split_and_the_rest_closed(database_url: str, db: Database, sim) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=10)
    sim.market.gap(trade.symbol, -15)
    sim.market.configure_partial_fills(rate=1.0, fraction=Decimal("0.4"))  # every market order fills 40% first
    defs = pipeline_definitions(database_url, sim)
    first = run_job(defs, STOP_LOSS_JOB)
    assert first.success
    sim.market.configure_partial_fills(rate=0.0)
    for _ in range(3):
        if held(sim, trade.symbol) == 0:
            break
        sim.market.advance(timedelta(minutes=2))
        assert run_job(defs, STOP_LOSS_JOB).success
    assert held(sim, trade.symbol) == 0
    rows = [
        t for t in trades_repo.trades_active_since(db, trade.entry_at - timedelta(days=1)) if t.symbol == trade.symbol
    ]
    assert all(t.status is TradeStatus.CLOSED for t in rows)
    assert sum(t.qty for t in rows) == Decimal(10)  # every share accounted for exactly once
    assert sum(o.filled_qty for o in sells(sim, trade.symbol)) == Decimal(10)  # and sold exactly once
