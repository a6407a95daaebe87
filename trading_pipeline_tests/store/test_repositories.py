"""The trading store on SQLite and PostgreSQL: exact money, aware times, the conditional claim."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.types import ExitReason, OrderAction, OrderSide, PositionSide, Quote, TradeStatus
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import Trade

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def new_trade(symbol: str = "ACME", **kw: object) -> trades_repo.NewTrade:
    base = dict(
        symbol=symbol,
        side=PositionSide.LONG,
        qty=Decimal("10"),
        entry_price=Decimal("100.12345678"),
        entry_at=NOW,
        stop_loss=Decimal("95.5"),
        take_profit=Decimal("110.25"),
    )
    base.update(kw)
    return trades_repo.NewTrade(**base)  # type: ignore[arg-type]


def test_money_is_exact_and_times_are_aware_utc(db: Database) -> None:
    eastern = datetime(2026, 11, 24, 10, 0, tzinfo=__import__("zoneinfo").ZoneInfo("America/New_York"))
    trade = trades_repo.insert_trade(db, new_trade(entry_price=Decimal("123.45678901"), entry_at=eastern))
    stored = trades_repo.get_trade(db, trade.id)
    assert stored is not None
    assert stored.entry_price == Decimal("123.45678901")
    assert isinstance(stored.entry_price, Decimal)
    assert stored.entry_at == eastern and stored.entry_at.tzinfo is not None
    assert stored.entry_at.utcoffset() == timedelta(0)
    assert stored.status is TradeStatus.OPEN and stored.side is PositionSide.LONG


def test_float_money_and_naive_times_are_refused(db: Database) -> None:
    with pytest.raises(sa.exc.StatementError, match="Decimal"):
        trades_repo.insert_trade(db, new_trade(entry_price=100.5))
    with pytest.raises(sa.exc.StatementError, match="naive"):
        trades_repo.insert_trade(db, new_trade(entry_at=datetime(2026, 1, 1)))
    assert trades_repo.open_trades(db) == []  # nothing half-written


def test_enums_are_stored_by_name(db: Database) -> None:
    trades_repo.insert_trade(db, new_trade())
    with db.engine.connect() as conn:
        status, side = conn.execute(sa.text("SELECT status, side FROM trades")).one()
    assert (status, side) == ("OPEN", "LONG")


def test_claim_record_lifecycle(db: Database) -> None:
    trade = trades_repo.insert_trade(db, new_trade())
    cid = client_order_id(trade.id, OrderAction.CLOSE)
    assert claims_repo.claim_for_close(
        db,
        trade.id,
        client_order_id=cid,
        reason=ExitReason.STOP_LOSS,
        trigger_price=Decimal("95.5"),
        run_id="run-1",
        now=NOW,
    )
    # A second claim (an overlapping run) loses.
    assert not claims_repo.claim_for_close(
        db, trade.id, client_order_id=cid, reason=ExitReason.STOP_LOSS, trigger_price=None, run_id="run-2"
    )
    closing = trades_repo.closing_trades(db)
    assert [t.id for t in closing] == [trade.id]
    assert closing[0].close_client_order_id == cid and closing[0].closing_run_id == "run-1"
    assert closing[0].close_attempts == 1
    # Recording with another claim's id does nothing.
    assert not claims_repo.record_close(db, trade.id, client_order_id="tp-other", close_price=Decimal(1), closed_at=NOW)
    assert claims_repo.record_close(db, trade.id, client_order_id=cid, close_price=Decimal("94.9"), closed_at=NOW)
    closed = trades_repo.get_trade(db, trade.id)
    assert closed is not None and closed.status is TradeStatus.CLOSED
    assert closed.close_reason is ExitReason.STOP_LOSS and closed.close_price == Decimal("94.9")
    assert not claims_repo.record_close(db, trade.id, client_order_id=cid, close_price=Decimal(1), closed_at=NOW)
    assert trades_repo.open_trades(db) == [] and trades_repo.closing_trades(db) == []


def test_release_claim_reopens_for_a_later_attempt(db: Database) -> None:
    trade = trades_repo.insert_trade(db, new_trade())
    first = client_order_id(trade.id, OrderAction.CLOSE, 0)
    assert claims_repo.claim_for_close(
        db, trade.id, client_order_id=first, reason=ExitReason.TAKE_PROFIT, trigger_price=None, run_id=None
    )
    assert claims_repo.release_claim(db, trade.id, client_order_id=first)
    reopened = trades_repo.get_trade(db, trade.id)
    assert reopened is not None and reopened.status is TradeStatus.OPEN and reopened.close_client_order_id is None
    second = client_order_id(trade.id, OrderAction.CLOSE, reopened.close_attempts)
    assert second != first
    assert claims_repo.claim_for_close(
        db, trade.id, client_order_id=second, reason=ExitReason.TAKE_PROFIT, trigger_price=None, run_id=None
    )
    again = trades_repo.get_trade(db, trade.id)
    assert again is not None and again.close_attempts == 2


def test_high_water_marks_only_for_open_trades(db: Database) -> None:
    a = trades_repo.insert_trade(db, new_trade("AAA", trailing_pct=Decimal(5)))
    b = trades_repo.insert_trade(db, new_trade("BBB", trailing_pct=Decimal(5)))
    assert a.high_water_mark == a.entry_price
    claims_repo.claim_for_close(
        db, b.id, client_order_id="tp-b", reason=ExitReason.MANUAL, trigger_price=None, run_id=None
    )
    assert trades_repo.update_high_water_marks(db, {a.id: Decimal(120), b.id: Decimal(130)}) == 1
    got = trades_repo.get_trade(db, a.id)
    assert got is not None and got.high_water_mark == Decimal(120)


def test_open_trades_filter_and_counts(db: Database) -> None:
    for symbol in ("AAA", "BBB", "AAA"):
        trades_repo.insert_trade(db, new_trade(symbol))
    assert len(trades_repo.open_trades(db)) == 3
    assert {t.symbol for t in trades_repo.open_trades(db, ["AAA"])} == {"AAA"}
    counts = trades_repo.count_trades_by_status(db)
    assert counts[TradeStatus.OPEN] == 3 and counts[TradeStatus.CLOSED] == 0


def test_upsert_order_is_idempotent_and_json_safe(db: Database) -> None:
    trade = trades_repo.insert_trade(db, new_trade())
    cid = client_order_id(trade.id, OrderAction.CLOSE)
    raw = {"id": uuid.uuid4(), "submitted_at": NOW, "qty": Decimal("10"), "nan": float("nan")}
    fields = orders_repo.OrderFields(
        client_order_id=cid,
        symbol="ACME",
        side=OrderSide.SELL,
        qty=Decimal(10),
        order_type="market",
        status="new",
        trade_id=trade.id,
        raw=raw,
    )
    orders_repo.upsert_order(db, fields)
    orders_repo.upsert_order(
        db,
        orders_repo.OrderFields(
            client_order_id=cid,
            symbol="ACME",
            side=OrderSide.SELL,
            qty=Decimal(10),
            order_type="market",
            status="filled",
            filled_qty=Decimal(10),
            filled_avg_price=Decimal("94.5"),
            raw=raw,
        ),
    )
    stored = orders_repo.get_order(db, cid)
    assert stored is not None
    assert stored.status == "filled" and stored.filled_avg_price == Decimal("94.5")
    assert stored.trade_id == trade.id  # kept from the first write
    assert stored.raw["id"] == str(raw["id"]) and stored.raw["nan"] is None
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM orders")).scalar() == 1
    assert orders_repo.count_orders_by_side(db)[OrderSide.SELL] == 1


def test_universe_snapshot_rerun_replaces(db: Database) -> None:
    day = date(2026, 11, 24)
    runs_repo.save_universe_snapshot(db, trading_date=day, seed=1, universe_size=10, symbols=["A", "B"])
    runs_repo.save_universe_snapshot(db, trading_date=day, seed=1, universe_size=10, symbols=["C"])
    snapshot = runs_repo.get_universe_snapshot(db, day)
    assert snapshot is not None and snapshot.symbols == ("C",)
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM universe_snapshots")).scalar() == 1


def test_quotes_and_decision_runs(db: Database) -> None:
    saved = runs_repo.save_quotes(db, [Quote("A", Decimal("1.01"), Decimal("1.02"), NOW)] * 3, run_id="r")
    assert saved == 3 and runs_repo.save_quotes(db, [], run_id="r") == 0
    run = runs_repo.start_decision_run(db, kind="entries", run_id="r", strategy="momentum")
    order_like = {"order": {"id": uuid.uuid4(), "at": NOW, "price": Decimal("1.5")}}
    runs_repo.finish_decision_run(db, run, order_like)
    meta = runs_repo.get_decision_run_meta(db, run)
    assert meta["order"]["price"] == "1.5" and isinstance(meta["order"]["id"], str)


def test_each_operation_returns_its_connection(db: Database) -> None:
    trade = trades_repo.insert_trade(db, new_trade())
    trades_repo.open_trades(db)
    claims_repo.claim_for_close(
        db, trade.id, client_order_id="tp-x", reason=ExitReason.MANUAL, trigger_price=None, run_id=None
    )
    stats = db.monitor.stats()
    assert db.monitor.checked_out == 0
    assert stats.transactions >= 3  # one transaction each, every one returned (checked_out == 0 above)


def test_monitor_counts_a_connection_held_during_a_broker_call(db: Database) -> None:
    with db.monitor.broker_call():
        pass
    assert db.monitor.stats().checkouts_during_broker_calls == 0
    with db.transaction() as session:
        session.execute(sa.select(sa.literal(1)))
        with db.monitor.broker_call():  # the seed's failure: a transaction held across a broker call
            pass
    with db.monitor.broker_call():
        trades_repo.open_trades(db)  # and a checkout while a broker call is in flight
    assert db.monitor.stats().checkouts_during_broker_calls == 2


def test_monitor_names_the_longest_transaction_by_its_first_statement(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trading_pipeline.store.database as database_module

    class FakeTime:  # transaction lengths chosen by the test, not measured
        now = 0.0

        @classmethod
        def perf_counter(cls) -> float:
            return cls.now

    monkeypatch.setattr(database_module, "time", FakeTime)
    db.monitor.reset()
    statements = ((0.005, sa.select(Trade.id)), (0.080, sa.select(Trade.symbol).where(Trade.symbol > "A")))
    for seconds, statement in statements:
        with db.transaction() as session:
            session.execute(statement)
            FakeTime.now += seconds
        FakeTime.now += 1.0  # between transactions: counted in neither
    stats = db.monitor.stats()
    assert stats.longest_transaction_ms == pytest.approx(80.0)
    assert stats.longest_transaction_statement.startswith("SELECT … FROM trades WHERE trades.symbol >")


@pytest.mark.postgres
def test_concurrent_claims_on_postgres_exactly_one_wins(postgres_server_url: str) -> None:
    from trading_pipeline_tests.conftest import _truncate_all

    _truncate_all(postgres_server_url)
    with Database(postgres_server_url, pool_size=10) as db:
        trades = [trades_repo.insert_trade(db, new_trade(f"S{i}")) for i in range(20)]
        winners: list[tuple[uuid.UUID, int]] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def contender(worker: int) -> None:
            barrier.wait()
            for trade in trades:
                won = claims_repo.claim_for_close(
                    db,
                    trade.id,
                    client_order_id=f"tp-{trade.id.hex[:8]}-{worker}",
                    reason=ExitReason.STOP_LOSS,
                    trigger_price=None,
                    run_id=str(worker),
                )
                if won:
                    with lock:
                        winners.append((trade.id, worker))

        threads = [threading.Thread(target=contender, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(t for t, _ in winners) == sorted(t.id for t in trades)  # each exactly once
        with db.transaction() as session:
            claimed = session.scalars(sa.select(Trade).where(Trade.status == TradeStatus.CLOSING)).all()
            for row in claimed:
                owner = dict(winners)[row.id]
                assert row.closing_run_id == str(owner)


def test_open_trades_are_read_in_pages_without_loss_or_repeat(db: Database) -> None:
    from trading_pipeline.store.models import Trade as TradeRow

    rows = [
        {
            "id": uuid.uuid4(),
            "symbol": f"S{i % 700}",
            "side": PositionSide.LONG,
            "qty": Decimal(1),
            "entry_price": Decimal(10),
            "entry_at": NOW + timedelta(seconds=i % 3),
            "status": TradeStatus.OPEN,
            "close_attempts": 0,
            "created_at": NOW,
            "updated_at": NOW,
        }
        for i in range(2 * trades_repo.READ_PAGE + 500)
    ]
    with db.transaction() as session:
        session.execute(sa.insert(TradeRow), rows)
    got = trades_repo.open_trades(db)
    assert len(got) == len(rows) and len({t.id for t in got}) == len(rows)
    assert [(t.entry_at, t.id) for t in got] == sorted((t.entry_at, t.id) for t in got)
    assert db.monitor.stats().transactions >= 3  # paged, one short transaction per page
    assert len(trades_repo.open_trades(db, ["S1", "S2"])) == len([r for r in rows if r["symbol"] in ("S1", "S2")])


def test_pnl_marks_open_trades_at_given_quotes_and_looks_up_only_the_rest(db: Database) -> None:
    from trading_pipeline.steps.pnl import pnl_since

    for symbol in ("AAA", "BBB"):
        trades_repo.insert_trade(db, new_trade(symbol, qty=Decimal("10"), entry_price=Decimal("100")))
    stored = [Quote("AAA", Decimal("90"), Decimal("90"), NOW), Quote("BBB", Decimal("120"), Decimal("120"), NOW)]
    runs_repo.save_quotes(db, stored, run_id="earlier")
    # Stored marks alone: AAA −100, BBB +200.
    assert pnl_since(db, NOW - timedelta(days=1)).unrealized == Decimal("100.00")
    # This run's quote for AAA wins over the stored one; BBB (not given) is still marked at its stored quote;
    # a quote for a symbol not held changes nothing.
    known = {"AAA": Quote("AAA", Decimal("110"), Decimal("110"), NOW), "ZZZ": Quote("ZZZ", Decimal(1), Decimal(1), NOW)}
    assert pnl_since(db, NOW - timedelta(days=1), known).unrealized == Decimal("300.00")
