"""The `performance` asset through Dagster against the sim broker's daily bars, on SQLite and Postgres:
values checked against the sim's own bars, idempotent re-runs, a 20-trading-day backfill, the chart."""

from __future__ import annotations

import base64
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from PIL import Image

from trading_pipeline.assets.performance import performance
from trading_pipeline.assets.trading_days import (
    nyse_sessions,
    previous_trading_day,
    trading_day_keys,
    trading_day_partitions,
    weekday_holidays,
)
from trading_pipeline.cli.reporting import run_backfill
from trading_pipeline.definitions import ASSETS
from trading_pipeline.domain.types import ExitReason, OrderSide, PositionSide, TradeStatus
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.sim.server import SimBroker
from trading_pipeline.store import performance_repository as perf_repo
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import Order, Trade
from trading_pipeline_tests.pipeline_fixtures import QUIET, check_results, metadata, pipeline_definitions
from trading_pipeline_tests.sim_fixtures import running_sim, tradable_symbols

D = Decimal
DAY = date(2026, 11, 20)  # a Friday before the sim's start (Tuesday 24 November 2026)
THU = date(2026, 11, 19)
PLACES = D("0.00000001")


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=300) as simulator:
        yield simulator


def utc(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def add_trade(db: Database, symbol: str, side: PositionSide, qty: str, entry: str, entry_at: datetime, **kw) -> None:
    closed = kw.get("close_price") is not None
    with db.transaction() as session:
        session.add(
            Trade(
                id=uuid.uuid4(),
                symbol=symbol,
                side=side,
                qty=D(qty),
                entry_price=D(entry),
                entry_at=entry_at,
                status=kw.pop("status", TradeStatus.CLOSED if closed else TradeStatus.OPEN),
                close_attempts=0,
                **kw,
            )
        )


def add_order(db: Database, symbol: str, side: OrderSide, at: datetime) -> None:
    with db.transaction() as session:
        session.add(
            Order(
                client_order_id=uuid.uuid4().hex[:24],
                symbol=symbol,
                side=side,
                qty=D(1),
                order_type="market",
                status="filled",
                submitted_at=at,
                raw={},
            )
        )


def closes(sim: SimBroker, symbols: list[str], first: date, last: date) -> dict[str, dict[date, Decimal]]:
    """The sim's own daily closes: the independent source the expected numbers are computed from."""
    bars = sim.market.daily_bars(symbols, first, last)
    return {symbol: {bar.day: bar.close for bar in items} for symbol, items in bars.items()}


def resources(database_url: str, sim: SimBroker) -> dict[str, dg.ConfigurableResource]:
    broker = BrokerResource(kind="sim", trading_url=sim.url, data_url=sim.url, request_timeout_seconds=5)
    return {"database": TradingDatabase(url=database_url), "broker": broker}


def materialize_day(database_url: str, sim: SimBroker, day: date, chart_dir: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [performance],
        partition_key=day.isoformat(),
        resources=resources(database_url, sim),
        run_config={**QUIET, "ops": {"performance": {"config": {"chart_dir": str(chart_dir)}}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def stored_rows(db: Database) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM daily_performance")).scalar_one()


def test_partitions_are_nyse_trading_days_only() -> None:
    keys = trading_day_keys(date(2026, 11, 21), date(2026, 12, 1))
    # Saturday 21, Sunday 22, Thanksgiving 26, 28-29 are not partitions; the half day (27th) is a session.
    assert keys == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-27", "2026-11-30", "2026-12-01"]
    assert not trading_day_partitions.has_partition_key("2025-12-25")
    assert not trading_day_partitions.has_partition_key("2025-01-09")  # national day of mourning (ad hoc)
    year = [k for k in trading_day_partitions.get_partition_keys() if k.startswith("2025-")]
    assert year == [d.isoformat() for d in nyse_sessions(date(2025, 1, 1), date(2025, 12, 31))]
    assert len(year) == 250
    assert date(2026, 11, 26) in weekday_holidays(date(2026, 11, 1), date(2026, 11, 30))
    assert previous_trading_day(date(2026, 11, 27)) == date(2026, 11, 25)
    assert previous_trading_day(date(2026, 11, 30)) == date(2026, 11, 27)


def test_a_day_is_computed_from_trades_and_the_brokers_bars(
    database_url: str, db: Database, sim: SimBroker, tmp_path: Path
) -> None:
    a, b, c, later = tradable_symbols(sim.market, 4)
    add_trade(
        db,
        a,
        PositionSide.LONG,
        "10",
        "50",
        utc(date(2026, 11, 18), 15),
        closed_at=utc(DAY, 16),
        close_price=D(55),
        close_reason=ExitReason.TAKE_PROFIT,
    )  # +50
    add_trade(
        db,
        b,
        PositionSide.SHORT,
        "5",
        "20",
        utc(THU, 15),
        closed_at=utc(DAY, 17),
        close_price=D(22),
        close_reason=ExitReason.STOP_LOSS,
    )  # −10
    add_trade(db, c, PositionSide.LONG, "3", "10", utc(DAY, 15))  # open at the close
    add_trade(db, later, PositionSide.LONG, "2", "10", utc(date(2026, 11, 23), 15))  # after the day
    add_trade(db, later, PositionSide.LONG, "2", "10", utc(DAY, 15), status=TradeStatus.CANCELLED)  # never held
    for side in (OrderSide.BUY, OrderSide.BUY, OrderSide.SELL):
        add_order(db, c, side, utc(DAY, 15))
    add_order(db, a, OrderSide.SELL, utc(THU, 15))  # the day before: not counted

    px = closes(sim, [a, b, c, "SPY"], THU, DAY)
    result = materialize_day(database_url, sim, DAY, tmp_path)
    assert result.success
    [row] = perf_repo.daily_performance(db, first=DAY, last=DAY)
    unrealized = (px[c][DAY] - 10) * 3
    previous_equity = 100000 + (px[a][THU] - 50) * 10 - (px[b][THU] - 20) * 5
    equity = 100000 + 50 - 10 + unrealized
    assert row.realized_pnl == D(40)
    assert row.unrealized_pnl == unrealized
    assert row.equity == equity
    assert row.portfolio_return == (equity / previous_equity - 1).quantize(PLACES)
    assert row.spy_close == px["SPY"][DAY]
    assert row.spy_return == (px["SPY"][DAY] / px["SPY"][THU] - 1).quantize(PLACES)
    assert (row.trades_opened, row.trades_closed, row.wins, row.losses) == (1, 2, 1, 1)
    assert row.closes_by_reason == {"stop_loss": 1, "take_profit": 1}
    assert (row.buys, row.sells) == (2, 1)

    meta = metadata(result, "performance")
    assert meta["trading_days"] == 1 and meta["open_positions"] == 1
    assert meta["realized_pnl"] == 40.0 and meta["equity"] == pytest.approx(float(equity))
    assert "| 2026-11-20 | 40.00 |" in meta["performance"]
    png = _png_from_markdown(meta["equity_vs_spy"])
    assert Image.open(io.BytesIO(png)).size == (800, 400)
    assert Path(meta["chart_file"]).read_bytes() == png
    assert check_results(result) == {"every_position_marked": True, "benchmark_close_known": True}

    # Re-running the partition replaces its row: same values, still one row.
    again = materialize_day(database_url, sim, DAY, tmp_path)
    assert again.success and stored_rows(db) == 1
    assert perf_repo.daily_performance(db) == [row]

    # A close recorded later for that day (e.g. a reconciled leftover) changes the row on re-run.
    with db.transaction() as session:
        session.execute(
            sa.update(Trade)
            .where(Trade.symbol == c)
            .values(
                status=TradeStatus.CLOSED, closed_at=utc(DAY, 20), close_price=D(12), close_reason=ExitReason.MANUAL
            )
        )
    assert materialize_day(database_url, sim, DAY, tmp_path).success
    [changed] = perf_repo.daily_performance(db)
    assert stored_rows(db) == 1
    assert changed.realized_pnl == D(46) and changed.unrealized_pnl == 0 and changed.trades_closed == 3


def test_positions_it_cannot_price_are_flagged_not_invented(sim: SimBroker, tmp_path: Path) -> None:
    from trading_pipeline.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'flagged.db'}"
    with Database(url) as db:
        upgrade(db)
        add_trade(db, "ZZZZ", PositionSide.LONG, "1", "10", utc(THU, 15))  # unknown to the broker: no bars
        add_trade(
            db,
            "YYYY",
            PositionSide.LONG,
            "1",
            "10",
            utc(THU, 15),  # closed, exit price lost
            status=TradeStatus.CLOSED,
            closed_at=utc(DAY, 15),
        )
        result = materialize_day(url, sim, DAY, tmp_path)
        assert result.success  # the day is still recorded ...
        assert check_results(result)["every_position_marked"] is False  # ... and the gap is a failed check
        flagged = metadata(result, "performance")["flagged"]
        assert flagged["unmarked_positions"] == {DAY.isoformat(): ["ZZZZ"]}
        assert flagged["closes_without_exit_price"] == {DAY.isoformat(): ["YYYY"]}
        [row] = perf_repo.daily_performance(db)
        assert row.unrealized_pnl == 0 and row.realized_pnl == 0


def test_backfill_of_20_trading_days_completes_and_is_idempotent(
    database_url: str, db: Database, sim: SimBroker, tmp_path: Path
) -> None:
    a, b = tradable_symbols(sim.market, 2)
    add_trade(db, a, PositionSide.LONG, "10", "40", utc(date(2026, 10, 20), 15))  # open throughout
    add_trade(
        db,
        b,
        PositionSide.SHORT,
        "7",
        "30",
        utc(date(2026, 10, 29), 15),
        closed_at=utc(date(2026, 11, 12), 18),
        close_price=D(28),
        close_reason=ExitReason.TAKE_PROFIT,
    )
    defs = pipeline_definitions(database_url, sim)
    assert {a.key for a in defs.assets} == {a.key for a in ASSETS} | {performance.key}
    config = {"ops": {"performance": {"config": {"chart_dir": str(tmp_path)}}}}
    instance = dg.DagsterInstance.ephemeral()

    # From a Sunday to a Friday: the partitions are the 20 trading days in between, nothing else.
    outcome = run_backfill(defs, "performance", date(2026, 10, 25), DAY, instance=instance, run_config=config)
    assert outcome.success, outcome.runs
    days = nyse_sessions(date(2026, 10, 25), DAY)
    assert outcome.keys == [d.isoformat() for d in days] and len(days) == 20
    assert len(outcome.runs) == 1  # single-run backfill policy: the range shares one bars request
    rows = perf_repo.daily_performance(db)
    assert [r.trading_date for r in rows] == days

    spy = closes(sim, ["SPY"], previous_trading_day(days[0]), DAY)["SPY"]
    mark = closes(sim, [a], days[0], DAY)[a]
    for row in rows:
        before = previous_trading_day(row.trading_date)
        assert row.spy_return == (spy[row.trading_date] / spy[before] - 1).quantize(PLACES)
        realized = D(14) if row.trading_date >= date(2026, 11, 12) else D(0)
        short_open = date(2026, 10, 29) <= row.trading_date < date(2026, 11, 12)
        assert row.realized_pnl == (D(14) if row.trading_date == date(2026, 11, 12) else 0)
        if not short_open:
            assert row.equity == 100000 + realized + (mark[row.trading_date] - 40) * 10
    assert sum(r.trades_closed for r in rows) == 1 and sum(r.trades_opened for r in rows) == 1

    again = run_backfill(defs, "performance", date(2026, 10, 25), DAY, instance=instance, run_config=config)
    assert again.success and stored_rows(db) == 20
    assert perf_repo.daily_performance(db) == rows
    runs = instance.get_run_records(dg.RunsFilter(tags={"trading_pipeline/backfill": again.backfill_id}))
    assert len(runs) == 1 and runs[0].dagster_run.status == dg.DagsterRunStatus.SUCCESS


def test_universe_backfill_runs_one_partition_per_run(database_url: str, db: Database, sim: SimBroker) -> None:
    from trading_pipeline.store import runs_repository as runs_repo

    defs = pipeline_definitions(database_url, sim)
    config = {"ops": {"universe": {"config": {"sample_size": 20}}}}
    first, last = date(2026, 11, 16), date(2026, 11, 18)
    outcome = run_backfill(defs, "universe", first, last, instance=dg.DagsterInstance.ephemeral(), run_config=config)
    assert outcome.success and outcome.keys == ["2026-11-16", "2026-11-17", "2026-11-18"]
    assert len(outcome.runs) == 3
    for n in range(3):
        snapshot = runs_repo.get_universe_snapshot(db, first + timedelta(days=n))
        assert snapshot is not None and len(snapshot.symbols) == 20


def _png_from_markdown(text: str) -> bytes:
    prefix = "](data:image/png;base64,"
    assert text.startswith("![") and prefix in text and text.endswith(")")
    png = base64.b64decode(text.split(prefix, 1)[1][:-1], validate=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return png


def test_performance_job_materializes_one_trading_day(database_url: str, db: Database, sim: SimBroker, tmp_path):
    from trading_pipeline.automation.jobs import performance_job
    from trading_pipeline.domain.names import PERFORMANCE_JOB

    defs = dg.Definitions(assets=[performance], jobs=[performance_job], resources=resources(database_url, sim))
    result = defs.resolve_job_def(PERFORMANCE_JOB).execute_in_process(
        partition_key=DAY.isoformat(),
        run_config={**QUIET, "ops": {"performance": {"config": {"chart_dir": str(tmp_path)}}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert [row.trading_date for row in perf_repo.daily_performance(db)] == [DAY]
    assert not defs.resolve_job_def(PERFORMANCE_JOB).partitions_def.has_partition_key("2026-11-26")  # Thanksgiving
