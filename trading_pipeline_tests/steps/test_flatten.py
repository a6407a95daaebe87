"""Close everything now (`steps/flatten.py`), through the real step against the sim broker over HTTP: a book of
our bracketed trades, a position bought outside the pipeline and an outside GTC limit sell holding its shares."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from trading_pipeline.domain.ids import client_order_id, outside_close_client_order_id
from trading_pipeline.domain.names import FLATTEN_JOB
from trading_pipeline.domain.strategy import price_level
from trading_pipeline.domain.types import ExitReason, OrderAction, PositionSide, TradeStatus
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.steps.flatten import FlattenError, flatten_book
from trading_pipeline.steps.flatten_report import ALREADY, CLOSED, QUEUED
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import current_trading_state, firing_alerts
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import broker_orders, pipeline_definitions, run_job
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols

AFTER_THE_CLOSE = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)  # 16:30 ET: the next open is 25 Nov 09:30 ET
OUTSIDE_LIMIT = "placed-in-the-web-app-1"


class Alerts:
    def __init__(self) -> None:
        self.fired: list[tuple[str, str, str]] = []

    def fire(self, key: str, title: str, message: str, **_: object) -> None:
        self.fired.append((key, title, message))


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def bracketed(db: Database, sim, symbol: str, qty: int = 10) -> trades_repo.TradeRecord:
    """A protected trade as entries opens it: a bracket entry (filled) whose stop leg the broker keeps `held`."""
    trade_id = uuid.uuid4()
    cid = client_order_id(trade_id, OrderAction.OPEN)
    price = sim.market.last_price(symbol)
    stop, target = price_level(price, Decimal(3), up=False), price_level(price, Decimal(6), up=True)
    order = sim.market.submit_order(
        {
            "symbol": symbol,
            "qty": str(qty),
            "side": "buy",
            "type": "market",
            "time_in_force": "gtc",
            "order_class": "bracket",
            "client_order_id": cid,
            "take_profit": {"limit_price": str(target)},
            "stop_loss": {"stop_price": str(stop)},
        }
    )
    assert order.status == "filled"
    return trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            id=trade_id,
            symbol=symbol,
            side=PositionSide.LONG,
            qty=Decimal(qty),
            entry_price=order.filled_avg_price,
            entry_at=sim.market.now,
            stop_loss=stop,
            take_profit=target,
            open_client_order_id=cid,
            protected=True,
            protection_client_order_id=cid,
        ),
    )


def book(db: Database, sim) -> tuple[list[trades_repo.TradeRecord], str]:
    """Two bracketed trades of ours, and an outside position with an outside GTC limit sell holding its shares."""
    first, second, outside = tradable_symbols(sim.market, 3)
    trades = [bracketed(db, sim, first), bracketed(db, sim, second, qty=4)]
    bought = sim.market.submit_order(
        {
            "symbol": outside,
            "qty": "7",
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": "bought-in-the-web-app",
        }
    )
    assert bought.status == "filled"
    sim.market.submit_order(
        {
            "symbol": outside,
            "qty": "7",
            "side": "sell",
            "type": "limit",
            "time_in_force": "gtc",
            "limit_price": str((bought.filled_avg_price * 2).quantize(Decimal("0.01"))),
            "client_order_id": OUTSIDE_LIMIT,
        }
    )
    return trades, outside


def sim_order_count(sim) -> int:
    return len(broker_orders(sim))


def test_flatten_closes_ours_and_outside_cancels_what_holds_them_and_halts(db: Database, sim) -> None:
    trades, outside = book(db, sim)
    alerts = Alerts()
    result = flatten_book(db, make_broker(sim), reason="broker incident", actor="ops", alerts=alerts)
    assert result.ok, result.lines
    assert sim.market.book.positions == {}  # every position flat: none short
    state = current_trading_state(db)
    assert state.halted and state.actor == "ops" and "broker incident" in state.reason
    for trade in trades:
        closed = trades_repo.get_trade(db, trade.id)
        assert closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.MANUAL
    assert {line.symbol: line.outcome for line in result.lines} == {t.symbol: CLOSED for t in [*trades]} | {
        outside: CLOSED
    }
    limit = next(o for o in broker_orders(sim) if o.client_order_id == OUTSIDE_LIMIT)
    assert limit.status == "canceled"
    assert any(OUTSIDE_LIMIT in c and c.startswith("outside the pipeline") for c in result.cancelled)
    legs = [o for o in broker_orders(sim) if o.parent_id is not None]
    assert legs and all(o.status == "canceled" for o in legs)  # the bracket legs, the held stop included
    # Not in the open listing (a filled bracket's legs roll up under a parent that is no longer open): looked up
    # by their parent, cancelled before the close, and reported.
    ours = sorted(c.split()[4] for c in result.cancelled if c.startswith("ours: "))
    assert ours == ["limit", "limit", "stop", "stop"]
    [audit] = [a for a in adjustments_repo.adjustments(db, symbol=outside)]
    assert audit.kind == adjustments_repo.OUTSIDE_FLATTEN and audit.trade_id is None and "ops" in audit.reason
    [(_, title, message)] = alerts.fired
    assert "ops" in title and "broker incident" in message and outside in message


def test_twice_after_the_close_queues_once_and_sends_no_second_order(db: Database, sim) -> None:
    trades, _ = book(db, sim)
    sim.market.advance_to(AFTER_THE_CLOSE)
    broker = make_broker(sim)
    first = flatten_book(db, broker, reason="end of strategy", actor="ops")
    assert first.ok and {line.outcome for line in first.lines} == {QUEUED}
    assert all("queued for the next open at 2026-11-25 09:30 ET" in line.detail for line in first.lines)
    sent = sim_order_count(sim)
    sells = Counter(o.client_order_id for o in broker_orders(sim) if o.side == "sell" and o.type == "market")
    assert len(sells) == 3 and set(sells.values()) == {1}
    second = flatten_book(db, broker, reason="end of strategy", actor="ops")
    assert sim_order_count(sim) == sent  # not one more order
    assert second.ok and {line.outcome for line in second.lines} == {ALREADY}
    # At the open the queued orders fill; the next stop-loss run records ours closed, reason manual.
    sim.market.advance_to(datetime(2026, 11, 25, 14, 31, tzinfo=UTC))
    assert sim.market.book.positions == {}
    run_stop_loss_sweep(db, broker, run_id="next-open", now=sim.market.now)
    for trade in trades:
        closed = trades_repo.get_trade(db, trade.id)
        assert closed.status is TradeStatus.CLOSED and closed.close_reason is ExitReason.MANUAL


def test_a_trade_a_stop_loss_run_is_closing_is_not_sold_again(db: Database, sim) -> None:
    trades, _ = book(db, sim)
    busy = trades[0]
    assert claims_repo.claim_for_close(
        db,
        busy.id,
        client_order_id=client_order_id(busy.id, OrderAction.CLOSE),
        reason=ExitReason.STOP_LOSS,
        trigger_price=busy.stop_loss,
        run_id="overlapping-stop-loss-run",
    )
    result = flatten_book(db, make_broker(sim), reason="drill", actor="ops")
    assert result.ok and [line.outcome for line in result.lines if line.symbol == busy.symbol] == [ALREADY]
    assert not [o for o in broker_orders(sim) if o.symbol == busy.symbol and o.type == "market" and o.side == "sell"]
    assert sim.market.book.positions[busy.symbol].qty == busy.qty  # left to the run that owns the close
    assert set(sim.market.book.positions) == {busy.symbol}


def test_a_working_close_of_outside_shares_is_not_doubled_when_the_position_changed(db: Database, sim) -> None:
    """A close an earlier flatten sent for outside shares, still working when the position's quantity changed
    (partly filled): its id no longer matches the position's, and it still covers the rest."""
    _, outside = book(db, sim)
    sim.market.advance_to(AFTER_THE_CLOSE)
    position = sim.market.book.positions[outside]
    earlier = outside_close_client_order_id(outside, "long", Decimal(12), position.avg_entry_price)
    sim.market.cancel_order(next(o.id for o in broker_orders(sim) if o.client_order_id == OUTSIDE_LIMIT))
    sim.market.submit_order(
        {
            "symbol": outside,
            "qty": "7",
            "side": "sell",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": earlier,
        }
    )
    before = sim_order_count(sim)
    result = flatten_book(db, make_broker(sim), reason="again", actor="ops", symbols=[outside])
    assert result.ok and [(line.outcome, line.whose) for line in result.lines] == [(ALREADY, "outside")]
    assert sim_order_count(sim) == before


def test_an_outside_close_that_ended_unfilled_is_retried_with_the_next_attempt(db: Database, sim) -> None:
    _, outside = book(db, sim)
    sim.market.advance_to(AFTER_THE_CLOSE)
    position = sim.market.book.positions[outside]
    first = outside_close_client_order_id(outside, "long", position.qty, position.avg_entry_price, 0)
    sim.market.cancel_order(next(o.id for o in broker_orders(sim) if o.client_order_id == OUTSIDE_LIMIT))
    earlier = sim.market.submit_order(
        {
            "symbol": outside,
            "qty": "7",
            "side": "sell",
            "type": "market",
            "time_in_force": "day",
            "client_order_id": first,
        }
    )
    sim.market.cancel_order(earlier.id)  # someone cancelled it in the broker's app: the id is taken, the order dead
    result = flatten_book(db, make_broker(sim), reason="again", actor="ops", symbols=[outside])
    assert result.ok and [line.outcome for line in result.lines] == [QUEUED]
    assert result.lines[0].client_order_id == first[: -len("-0")] + "-1"


def test_symbol_flattens_only_that_one(db: Database, sim) -> None:
    trades, outside = book(db, sim)
    result = flatten_book(db, make_broker(sim), reason="news on it", actor="ops", symbols=[trades[0].symbol.lower()])
    assert [line.symbol for line in result.lines] == [trades[0].symbol]
    assert set(sim.market.book.positions) == {trades[1].symbol, outside}
    assert trades_repo.get_trade(db, trades[1].id).status is TradeStatus.OPEN
    limit = next(o for o in broker_orders(sim) if o.client_order_id == OUTSIDE_LIMIT)
    assert limit.status == "new"  # another symbol's order is left alone
    assert current_trading_state(db).halted


def test_an_outside_short_is_bought_back_never_oversold(db: Database, sim) -> None:
    symbol = tradable_symbols(sim.market, 4)[3]
    sim.market.submit_order({"symbol": symbol, "qty": "5", "side": "sell", "type": "market", "time_in_force": "day"})
    assert sim.market.book.positions[symbol].qty == Decimal(-5)
    result = flatten_book(db, make_broker(sim), reason="no shorts", actor="ops", symbols=[symbol])
    assert result.ok and [(line.held, line.outcome) for line in result.lines] == [("5 short", CLOSED)]
    [cover] = [o for o in broker_orders(sim) if o.side == "buy"]
    assert cover.qty == Decimal(5) and cover.status == "filled" and symbol not in sim.market.book.positions


def test_bad_input_is_refused_before_anything_is_done(db: Database, sim) -> None:
    book(db, sim)
    broker = make_broker(sim)
    with pytest.raises(FlattenError, match="a reason is required"):
        flatten_book(db, broker, reason="  ", actor="ops")
    with pytest.raises(FlattenError, match=r"ZZZZ: the broker holds no such position.*check the spelling"):
        flatten_book(db, broker, reason="typo", actor="ops", symbols=["ZZZZ"])
    with pytest.raises(FlattenError, match="not a symbol"):
        flatten_book(db, broker, reason="typo", actor="ops", symbols=["A B"])
    assert not current_trading_state(db).halted and len(sim.market.book.positions) == 3


def test_an_unreachable_broker_halts_and_says_what_to_do(db: Database, sim) -> None:
    from trading_pipeline.broker.retry import RetryPolicy

    dead = make_broker(sim, trading_url="http://127.0.0.1:9", retry=RetryPolicy(max_attempts=1))
    with pytest.raises(FlattenError, match=r"broker could not be read.*Entries ARE halted.*run the same command"):
        flatten_book(db, dead, reason="incident", actor="ops")
    assert current_trading_state(db).halted


def test_the_job_needs_a_reason_then_flattens_and_reports(database_url: str, db: Database, sim) -> None:
    book(db, sim)
    defs = pipeline_definitions(database_url, sim)
    with pytest.raises(Exception, match="reason"):
        run_job(defs, FLATTEN_JOB)  # the run does not start without its reason
    assert len(sim.market.book.positions) == 3 and not current_trading_state(db).halted
    result = run_job(defs, FLATTEN_JOB, run_config={"ops": {"flatten": {"config": {"reason": "drill", "actor": "ui"}}}})
    assert result.success
    events = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = {k: getattr(v, "value", v) for k, v in events[0].event_specific_data.metadata.items()}
    assert meta["refused"] == 0 and meta["orders_sent"] == 3 and OUTSIDE_LIMIT in meta["orders_cancelled"]
    assert sim.market.book.positions == {}
    assert any(a.key.startswith("flatten:") for a in firing_alerts(db))


def test_the_job_fails_when_the_broker_refuses(database_url: str, db: Database, sim) -> None:
    trades, _ = book(db, sim)
    sim.market.set_tradable(trades[0].symbol, False)  # the broker refuses orders in a symbol it does not trade
    result = run_job(
        pipeline_definitions(database_url, sim),
        FLATTEN_JOB,
        run_config={"ops": {"flatten": {"config": {"reason": "drill"}}}},
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert trades[0].symbol in failure.event_specific_data.error.message
    assert "the next stop-loss run re-arms them" in failure.event_specific_data.error.message
    assert trades_repo.get_trade(db, trades[1].id).status is TradeStatus.CLOSED  # the rest still closed
