"""Behaviour no test covered before (each was changed on purpose and the suite still passed): a quote exactly at
the stop, held shares shared by two trades in one symbol, a rejected close released for a retry, which reason a
leg that filled during its cancel gets, a stop leg at the wrong price, a pending entry resolved, and heartbeat
errors in the health summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading_pipeline.broker.base import BrokerOrder, OrderSide, OrderType
from trading_pipeline.domain.exits import PositionView, decide_exit
from trading_pipeline.domain.types import ExitReason, PositionSide, Quote, TradeStatus
from trading_pipeline.steps.close_orders import _record_leg_close
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.steps.protection import legs_match
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import seed_positions
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def test_a_quote_exactly_at_the_stop_closes_a_long() -> None:
    position = PositionView("AAA", PositionSide.LONG, Decimal(1), Decimal(100), NOW, stop_loss=Decimal(97))
    at_stop = decide_exit(position, Quote("AAA", Decimal(97), Decimal("97.02"), NOW), now=NOW)
    above = decide_exit(position, Quote("AAA", Decimal("97.01"), Decimal("97.03"), NOW), now=NOW)
    assert at_stop is not None and at_stop.reason is ExitReason.STOP_LOSS and at_stop.trigger_price == Decimal(97)
    assert above is None


def test_two_trades_in_one_symbol_never_sell_more_than_the_broker_holds(db: Database, sim) -> None:
    """The broker holds 10 shares, the DB two trades of 10 (drift): the sweep sells 10 once, never 20 (a short)."""
    symbol = tradable_symbols(sim.market, 1)[0]
    first, second = seed_positions(db, sim, [symbol, symbol], qty=10)
    sim.market.book.positions[symbol].qty = Decimal(10)
    sim.market.gap(symbol, -15)
    run_stop_loss_sweep(db, make_broker(sim), run_id="r1", now=sim.market.now, max_quote_age=None)
    sold = sum(o.filled_qty for o in sim.market.book.orders.values() if o.side == "sell")
    assert sold == Decimal(10)
    assert symbol not in sim.market.book.positions  # flat, not short
    statuses = {trades_repo.get_trade(db, t.id).status for t in (first, second)}
    assert TradeStatus.CLOSED in statuses and TradeStatus.OPEN in statuses  # the other is left for the repair


def test_a_close_refused_as_not_tradable_is_released_and_retried_at_its_cadence(db: Database, sim) -> None:
    """"not tradable" lasts: released (never stuck `closing`), not re-sent 2 minutes later, re-sent after 15."""
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=3)
    sim.market.gap(trade.symbol, -15)
    sim.market.set_tradable(trade.symbol, False)  # the broker refuses orders in a symbol it does not trade
    first = run_stop_loss_sweep(db, make_broker(sim), run_id="r1", now=sim.market.now, max_quote_age=None)
    released = trades_repo.get_trade(db, trade.id)
    assert trade.symbol in first.failures and released.status is TradeStatus.OPEN  # not stuck `closing`
    assert released.close_client_order_id is None and released.close_attempts == 1
    assert trade.symbol in first.new_refusals and trade.symbol in first.refused
    sim.market.set_tradable(trade.symbol, True)
    sim.market.advance(timedelta(minutes=2))
    held_back = run_stop_loss_sweep(db, make_broker(sim), run_id="r2", now=sim.market.now, max_quote_age=None)
    assert held_back.orders_submitted == 0 and trade.symbol in held_back.refused and not held_back.new_refusals
    assert trades_repo.get_trade(db, trade.id).close_attempts == 1  # nothing claimed, nothing sent
    sim.market.advance(timedelta(minutes=14))
    retried = run_stop_loss_sweep(db, make_broker(sim), run_id="r3", now=sim.market.now, max_quote_age=None)
    closed = trades_repo.get_trade(db, trade.id)
    assert closed.status is TradeStatus.CLOSED and closed.close_client_order_id.endswith("-close-1")
    assert retried.refusals_cleared == [trade.symbol]


def _leg(kind: OrderType, *, price: Decimal, qty: Decimal = Decimal(5), status: str = "filled") -> BrokerOrder:
    return BrokerOrder(
        id=f"leg-{kind.value}",
        client_order_id=f"leg-{kind.value}",
        symbol="AAA",
        side=OrderSide.SELL,
        qty=qty,
        type=kind,
        status=status,
        filled_qty=qty if status == "filled" else Decimal(0),
        filled_avg_price=price if status == "filled" else None,
        submitted_at=NOW,
        filled_at=NOW if status == "filled" else None,
        stop_price=price if kind is OrderType.STOP else None,
        limit_price=price if kind is OrderType.LIMIT else None,
    )


@pytest.mark.parametrize(
    ("kind", "reason"), [(OrderType.STOP, ExitReason.BROKER_STOP), (OrderType.LIMIT, ExitReason.TAKE_PROFIT)]
)
def test_a_leg_that_filled_during_its_cancel_records_its_own_reason(db: Database, kind, reason) -> None:
    trade = trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            symbol="AAA",
            side=PositionSide.LONG,
            qty=Decimal(5),
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
    result = SweepResult()
    assert _record_leg_close(db, trade, "tp-x", _leg(kind, price=Decimal(97)), result)
    closed = trades_repo.get_trade(db, trade.id)
    assert closed.status is TradeStatus.CLOSED and closed.close_reason is reason
    assert result.closes_by_reason == {reason.value: 1}


def test_a_stop_leg_at_the_wrong_price_is_not_protection() -> None:
    trade = trades_repo.TradeRecord(
        id=__import__("uuid").uuid4(),
        symbol="AAA",
        side=PositionSide.LONG,
        qty=Decimal(5),
        entry_price=Decimal(100),
        entry_at=NOW,
        stop_loss=Decimal(97),
        take_profit=Decimal(106),
        trailing_pct=None,
        high_water_mark=None,
        status=TradeStatus.OPEN,
        strategy=None,
        open_client_order_id=None,
        close_reason=None,
        close_trigger_price=None,
        close_price=None,
        closed_at=None,
        close_client_order_id=None,
        close_attempts=0,
        closing_started_at=None,
        closing_run_id=None,
        protected=True,
    )
    take = _leg(OrderType.LIMIT, price=Decimal(106), status="new")
    right = _leg(OrderType.STOP, price=Decimal(97), status="held")
    wrong = _leg(OrderType.STOP, price=Decimal(95), status="held")
    half = _leg(OrderType.STOP, price=Decimal(97), qty=Decimal(2), status="held")
    assert legs_match(trade, [take, right])  # a `held` stop leg is live protection
    assert not legs_match(trade, [take, wrong])
    assert not legs_match(trade, [take, half])
    assert not legs_match(trade, [take, _leg(OrderType.STOP, price=Decimal(97), status="canceled")])


def test_heartbeat_errors_make_the_daemon_unhealthy(tmp_path) -> None:
    import dagster as dg
    from dagster._daemon.types import DaemonHeartbeat
    from dagster._utils.error import SerializableErrorInfo

    from trading_pipeline.monitoring.health import daemon_health

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        daemon = next(iter(instance.get_required_daemon_types()))
        error = SerializableErrorInfo("sensor tick failed: trading DB not migrated\nTraceback…", [], "Error")
        instance.add_daemon_heartbeat(DaemonHeartbeat(NOW.timestamp(), daemon, "test-daemon", [error]))
        [item] = [i for i in daemon_health(instance, now=NOW + timedelta(seconds=5)) if i.name == f"daemon {daemon}"]
        assert item.ok is False and "trading DB not migrated" in item.detail
