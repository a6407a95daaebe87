"""Everything the broker holds is protected; nothing is written off without evidence (issue 24), through the
real stop-loss job against the sim broker over HTTP: a position missing without a fill stays open and is
reported; a whole book vanishing is one incident that halts entries; an unpublished rename re-links the trade;
a crossed stop is closed with the positions endpoints down (and re-sized on Alpaca's 403); out of session no
market order is queued and the position is reported until the open; a refused exit is not re-sent every tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest

from trading_pipeline.automation.sensors import stop_trigger_sensor
from trading_pipeline.domain.exits import broker_stop_level
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.domain.types import ExitReason, TradeStatus
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import refusals_repository as refusals_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import current_trading_state, firing_alerts
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import (
    broker_orders,
    check_results,
    metadata,
    pipeline_definitions,
    run_job,
    seed_positions,
)
from trading_pipeline_tests.sim_fixtures import running_sim, tradable_symbols

AFTER_THE_CLOSE = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)  # 16:30 ET: the broker's clock is closed
NEXT_OPEN = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=400) as simulator:
        yield simulator


def sells(sim, symbol: str) -> list:
    return [o for o in broker_orders(sim) if o.side == "sell" and o.symbol == symbol]


def held(sim, symbol: str) -> Decimal:
    position = sim.market.book.positions.get(symbol)
    return Decimal(0) if position is None else position.qty


def alert_keys(db: Database) -> set[str]:
    return {a.key for a in firing_alerts(db)}


def test_a_position_missing_without_a_fill_stays_open_and_is_reported_every_run(
    database_url: str, db: Database, sim
) -> None:
    kept, vanished, other = seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=7)
    del sim.market.book.positions[vanished.symbol]  # gone from the listing, no order, no corporate action
    defs = pipeline_definitions(database_url, sim)
    for _ in range(2):  # looked up again on the next run, still not written off
        result = run_job(defs, STOP_LOSS_JOB)
        still = trades_repo.get_trade(db, vanished.id)
        assert still.status is TradeStatus.OPEN and still.qty == Decimal(7)
        assert check_results(result)["positions_confirmed"] is False
        assert vanished.symbol in str(metadata(result, "positions")["unconfirmed"])
    assert not [a for a in adjustments_repo.adjustments(db, symbol=vanished.symbol) if a.kind == "closed_outside"]
    assert "positions:unconfirmed" in alert_keys(db)
    assert not current_trading_state(db).halted  # one symbol of three is not an incident
    assert {trades_repo.get_trade(db, t.id).status for t in (kept, other)} == {TradeStatus.OPEN}


def test_a_position_sold_at_the_broker_is_closed_on_its_fill(database_url: str, db: Database, sim) -> None:
    """The evidence case: an outside sell that filled closes the trade at the fill's price (reason manual)."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=4)
    sale = sim.market.submit_order(
        {"symbol": trade.symbol, "qty": "4", "side": "sell", "type": "market", "time_in_force": "day"}
    )
    assert sale.status == "filled"
    result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    closed = trades_repo.get_trade(db, trade.id)
    assert closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.MANUAL
    assert closed.close_price == sale.filled_avg_price
    assert check_results(result)["positions_confirmed"] is True


def test_most_of_the_book_vanishing_halts_entries_and_writes_off_nothing(database_url: str, db: Database, sim) -> None:
    trades = seed_positions(db, sim, tradable_symbols(sim.market, 4), qty=5)
    sim.market.book.positions.clear()  # an empty listing (or another account's keys)
    result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    assert {trades_repo.get_trade(db, t.id).status for t in trades} == {TradeStatus.OPEN}
    assert all(trades_repo.get_trade(db, t.id).qty == Decimal(5) for t in trades)
    assert check_results(result)["positions_confirmed"] is False
    assert "4 of 4 symbols" in metadata(result, "positions")["mass_disappearance"]
    state = current_trading_state(db)
    assert state.halted and "reconciliation" in state.actor
    assert "positions:mass_disappearance" in alert_keys(db)
    assert not adjustments_repo.adjustments(db)  # not a single repair: nothing cut, nothing closed


def test_shares_under_a_new_symbol_are_relinked_to_their_trade(database_url: str, db: Database, sim) -> None:
    """A rename the corporate-actions feed has not published: OLD vanishes, NEW appears with our quantity at our
    cost basis. The trade follows its shares (protected under NEW), never written off."""
    old, new = tradable_symbols(sim.market, 2)
    [trade] = seed_positions(db, sim, [old], qty=6)
    position = sim.market.book.positions.pop(old)
    position.symbol = new
    sim.market.book.positions[new] = position
    price = sim.market.last_price(old)  # the same company under its new ticker trades where it did
    sim.market.set_price(new, price - Decimal("0.01"), price + Decimal("0.01"))
    result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    moved = trades_repo.get_trade(db, trade.id)
    assert moved.status is TradeStatus.OPEN and moved.symbol == new and moved.qty == Decimal(6)
    assert [a.kind for a in adjustments_repo.adjustments(db)] == ["symbol_change"]
    assert old in str(metadata(result, "positions")["relinked_to_new_symbols"])
    assert check_results(result)["positions_confirmed"] is True
    sim.market.gap(new, -15)  # protected under its new symbol: the next cross sells it
    run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    assert held(sim, new) == 0 and trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED


@pytest.mark.parametrize("drift", [False, True])
def test_a_crossed_stop_is_closed_with_every_positions_endpoint_down(
    database_url: str, db: Database, sim, drift: bool
) -> None:
    """40 consecutive 500s on GET /v2/positions and GET /v2/positions/{symbol}: the close goes out sized to the
    DB's quantity. With drift (the DB says 10, the broker holds 6) Alpaca's 403 names what is held, and the close
    is re-sized to it within the run — flat, never short."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=10)
    if drift:
        sim.market.book.positions[trade.symbol].qty = Decimal(6)
    sim.market.gap(trade.symbol, -15)
    for route in ("GET /v2/positions", "GET /v2/positions/{symbol}"):
        sim.faults.fail_next("500", count=40, route=route)
    result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    sim.faults.clear()
    closed = trades_repo.get_trade(db, trade.id)
    assert closed.status is TradeStatus.CLOSED, metadata(result, "closes")["failures"]
    assert held(sim, trade.symbol) == 0
    filled = [o.filled_qty for o in sells(sim, trade.symbol) if o.filled_qty > 0]
    assert filled == [Decimal(6) if drift else Decimal(10)]
    assert trade.symbol in str(metadata(result, "closes")["closes_sent_blind"])


def test_out_of_session_no_market_order_is_queued_and_the_position_is_reported_until_the_open(
    database_url: str, db: Database, sim
) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=3)
    sim.market.advance_to(AFTER_THE_CLOSE)
    sim.market.gap(trade.symbol, -15)
    defs = pipeline_definitions(database_url, sim)
    result = run_job(defs, STOP_LOSS_JOB)
    assert not sells(sim, trade.symbol)  # nothing queued silently for the next session
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.OPEN
    assert check_results(result)["no_position_beyond_stop"] is False
    waiting = str(metadata(result, "closes")["waiting_for_open"])
    assert trade.symbol in waiting and "2026-11-25 09:30 ET" in waiting
    assert "closes:waiting_for_open" in alert_keys(db)
    sim.market.advance_to(NEXT_OPEN + timedelta(minutes=1))
    if trades_repo.get_trade(db, trade.id).stop_loss < sim.market.last_price(trade.symbol):
        sim.market.gap(trade.symbol, -15)  # still beyond its stop at the open
    run_job(defs, STOP_LOSS_JOB)
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSED
    assert held(sim, trade.symbol) == 0
    assert "closes:waiting_for_open" not in alert_keys(db)


def test_a_refused_exit_is_not_requested_again_by_the_stop_trigger_every_tick(
    database_url: str, db: Database, sim
) -> None:
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=3)
    sim.market.gap(trade.symbol, -15)
    sim.market.set_tradable(trade.symbol, False)  # the broker refuses the exit: "not tradable" (lasts)
    defs = pipeline_definitions(database_url, sim)
    result = run_job(defs, STOP_LOSS_JOB)
    assert trade.symbol in str(metadata(result, "closes")["exits_refused"])
    assert f"closes:refused:{trade.symbol}" in alert_keys(db)
    assert check_results(result)["no_position_beyond_stop"] is False  # reported until it is flat
    refusal = refusals_repo.refusals(db)[trade.symbol]
    assert refusal.retry_after == refusal.last_refused_at + timedelta(minutes=15)
    sim.market.set_tradable(trade.symbol, True)
    sim.market.gap(trade.symbol, 0)  # still beyond the stop
    tick = trigger(database_url, sim)
    assert isinstance(tick, dg.SkipReason) and "refused" in tick.skip_message, tick
    sim.market.advance(timedelta(minutes=16))
    sim.market.gap(trade.symbol, 0)
    again = trigger(database_url, sim)
    assert isinstance(again, dg.RunRequest), again  # its cadence came round: requested once more


def trigger(database_url: str, sim) -> dg.RunRequest | dg.SkipReason:
    resources = {
        "database": TradingDatabase(url=database_url),
        "broker": BrokerResource(kind="sim", trading_url=sim.url, data_url=sim.url),
    }
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources) as context:
        return stop_trigger_sensor(context)


def buy_outside(sim, symbol: str, qty: int) -> None:
    order = sim.market.submit_order(
        {"symbol": symbol, "qty": str(qty), "side": "buy", "type": "market", "time_in_force": "day"}
    )
    assert order.status == "filled"


def test_a_position_bought_outside_the_pipeline_is_adopted_and_protected(database_url: str, db: Database, sim) -> None:
    """Paper's default policy: bought in Alpaca's dashboard → a trade with the default levels, audited, alerted,
    and sold by the sweep when it crosses."""
    symbol = tradable_symbols(sim.market, 1)[0]
    buy_outside(sim, symbol, 8)
    defs = pipeline_definitions(database_url, sim)
    result = run_job(defs, STOP_LOSS_JOB)
    [adopted] = trades_repo.open_trades(db)
    assert adopted.symbol == symbol and adopted.qty == Decimal(8) and adopted.strategy == "adopted"
    assert adopted.stop_loss is not None and adopted.stop_loss < adopted.entry_price < adopted.take_profit
    assert [a.kind for a in adjustments_repo.adjustments(db, symbol=symbol)] == ["adopted"]
    assert symbol in str(metadata(result, "positions")["outside_positions_adopted"])
    assert f"positions:adopted:{symbol}" in alert_keys(db)
    run_job(defs, STOP_LOSS_JOB)
    assert len(trades_repo.open_trades(db)) == 1  # adopted once, not once a run
    sim.market.gap(symbol, -15)
    run_job(defs, STOP_LOSS_JOB)
    assert held(sim, symbol) == 0
    assert trades_repo.get_trade(db, adopted.id).status is TradeStatus.CLOSED


def test_alert_only_leaves_an_outside_position_alone_and_says_it_is_unprotected(
    database_url: str, db: Database, sim
) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    buy_outside(sim, symbol, 5)
    defs = pipeline_definitions(database_url, sim, outside_positions="alert-only")
    result = run_job(defs, STOP_LOSS_JOB)
    assert not trades_repo.open_trades(db)
    assert "UNPROTECTED" in str(metadata(result, "positions")["outside_positions_unprotected"])
    assert any(key.startswith(f"positions:outside:{symbol}:") for key in alert_keys(db))
    sim.market.gap(symbol, -15)
    run_job(defs, STOP_LOSS_JOB)
    assert held(sim, symbol) == Decimal(5) and not sells(sim, symbol)  # a person's own holding: never sold


def live_stop_legs(sim, symbol: str) -> list:
    return [
        o
        for o in broker_orders(sim)
        if o.symbol == symbol and o.type == "stop" and o.status in ("new", "held", "accepted", "pending_new")
    ]


def test_the_brokers_stop_follows_the_trailing_stop_with_one_live_leg(database_url: str, db: Database, sim) -> None:
    """Bracketed entries with a 2 % trailing stop: as the price rises, the broker's own stop leg is replaced
    (PATCH) up to the trailing level — one live stop leg at every moment — so that a gap while the pipeline is
    down fills at the current level, not the initial stop."""
    defs = pipeline_definitions(database_url, sim, max_open_positions=1, protective_orders=True, trailing_stop_pct=2.0)
    day = run_job(
        defs,
        "trading_day_job",
        partition_key="2026-11-24",
        run_config={"ops": {"universe": {"config": {"sample_size": 120}}}},
    )
    assert day.success
    [trade] = trades_repo.open_trades(db)
    [initial] = live_stop_legs(sim, trade.symbol)
    assert initial.stop_price == trade.stop_loss
    sim.market.gap(trade.symbol, 4)  # up 4 %: the trailing level (2 % below the best bid) passes the 3 % stop
    run_job(defs, STOP_LOSS_JOB)  # the sweep ratchets the high-water mark
    result = run_job(defs, STOP_LOSS_JOB)  # protection moves the broker's stop to it
    raised = trades_repo.get_trade(db, trade.id)
    [moved] = live_stop_legs(sim, trade.symbol)
    assert moved.id != initial.id and moved.stop_price > initial.stop_price
    assert moved.stop_price == broker_stop_level(raised.position_view())
    assert trade.symbol in str(metadata(result, "positions")["broker_stops_raised"])
    again = run_job(defs, STOP_LOSS_JOB)  # nothing moved: nothing replaced
    assert (
        metadata(again, "positions")["broker_stops_raised"] == "[]"
        or not metadata(again, "positions")["broker_stops_raised"]
    )
    assert [o.id for o in live_stop_legs(sim, trade.symbol)] == [moved.id]
    # The pipeline is down; the price falls through the trailing level: the broker's leg sells at it.
    sim.market.gap(trade.symbol, -6)
    assert trade.symbol not in sim.market.book.positions
    filled = [o for o in broker_orders(sim) if o.symbol == trade.symbol and o.side == "sell" and o.filled_qty > 0]
    assert [o.id for o in filled] == [moved.id]


def test_a_pdt_refusal_is_alerted_with_what_to_do_and_not_resent_until_its_cadence(
    database_url: str, db: Database, sim
) -> None:
    """Alpaca's pattern-day-trading protection (403, code 40310100) refuses the exit of a position opened today:
    one alert with the broker's words and what a person can do; the next run 2 minutes later sends nothing."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=2)
    sim.market.set_pattern_day_trader(True)
    sim.market.gap(trade.symbol, -15)
    defs = pipeline_definitions(database_url, sim)
    first = run_job(defs, STOP_LOSS_JOB)
    refused = str(metadata(first, "closes")["exits_refused"])
    assert "pattern-day-trading protection" in refused and "40310100" in refused
    [alert] = [a for a in firing_alerts(db) if a.key == f"closes:refused:{trade.symbol}"]
    assert "Alpaca's dashboard" in alert.message
    posts = len([o for o in broker_orders(sim) if o.side == "sell"])
    sim.market.advance(timedelta(minutes=2))
    second = run_job(defs, STOP_LOSS_JOB)
    assert len([o for o in broker_orders(sim) if o.side == "sell"]) == posts  # nothing re-sent
    assert check_results(second)["no_position_beyond_stop"] is False
    assert trades_repo.get_trade(db, trade.id).status is TradeStatus.OPEN


def test_another_accounts_listing_is_an_incident_and_crossed_stops_still_close(
    database_url: str, db: Database, sim
) -> None:
    """Wrong keys or a confused listing: the broker lists another account's book. Nothing of ours is written off,
    nothing of theirs adopted, entries halt — and a stop crossed meanwhile still closes (the symbol's own
    position endpoint is asked before a close treats it as not held)."""
    trades = seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=4)
    sim.faults.configure(positions_listing="foreign")
    sim.market.gap(trades[0].symbol, -15)
    result = run_job(pipeline_definitions(database_url, sim), STOP_LOSS_JOB)
    sim.faults.clear()
    assert trades_repo.get_trade(db, trades[0].id).status is TradeStatus.CLOSED
    assert held(sim, trades[0].symbol) == 0
    assert {trades_repo.get_trade(db, t.id).status for t in trades[1:]} == {TradeStatus.OPEN}
    assert "mass_disappearance" in str(check_results(result)) or metadata(result, "positions")["mass_disappearance"]
    assert current_trading_state(db).halted
    assert not [t for t in trades_repo.open_trades(db) if t.strategy == "adopted"]
