"""The demo (the README's main command) runs in the suite at a small size; its report matches the DB."""

from __future__ import annotations

import io
from datetime import date

import dagster as dg
import pytest

from trading_pipeline.domain.types import OrderSide, TradeStatus
from trading_pipeline.harness.demo import Demo, DemoOptions
from trading_pipeline.harness.demo_report import render_report
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database


@pytest.mark.parametrize("protective", [False, True], ids=["sweep-only", "broker-protected"])
def test_demo_small_session(tmp_path, protective: bool) -> None:
    out = io.StringIO()
    options = DemoOptions(
        protective_orders=protective,
        data_dir=tmp_path,
        minutes=24,
        session_date=date(2026, 11, 24),
        n_symbols=600,
        sample_size=150,
        max_positions=8,
    )
    report = Demo(options, out=out).run()
    text = render_report(report)
    assert report.healthy, text
    assert report.runs_failed == 0 and report.runs_succeeded == 1 + 12 + report.trigger_runs
    assert report.trigger_runs >= 2  # the gap and the jump are caught by the sensor before the schedule
    if protective:
        assert report.reaction.startswith("0 s: the broker's own protective stop") and "20 s later" in report.reaction
    else:
        assert "via the stop-trigger sensor" in report.reaction and report.reaction.startswith("20 s")
    # The scripted gap-down and jump: closed by the sweep, or by the broker's own orders when protected.
    assert report.closes_by_reason.get("broker_stop" if protective else "stop_loss", 0) >= 1, text
    assert report.closes_by_reason.get("take_profit", 0) >= 1, text
    assert report.checkouts_during_broker_calls == 0 and report.beyond_stop == []
    assert "12/12" in out.getvalue() and "scripted" in out.getvalue()

    with Database(f"sqlite:///{report.database_path}") as db:
        counts = trades_repo.count_trades_by_status(db)
        sides = orders_repo.count_orders_by_side(db)
        assert report.positions_opened == counts[TradeStatus.OPEN] + counts[TradeStatus.CLOSED] == 8
        assert report.closes_by_reason == trades_repo.closes_by_reason(db)
        assert (report.buys, report.sells) == (sides[OrderSide.BUY], sides[OrderSide.SELL])
        assert report.open_positions == counts[TradeStatus.OPEN]
    # One multi-symbol request per run and per sensor tick (3 ticks between scheduled runs), never per position.
    assert report.sensor_evaluations == 12 * 3
    assert report.quote_requests == 1 + 12 + report.trigger_runs + report.sensor_evaluations

    # The runs are in the project-local Dagster instance, visible to `dagster dev` afterwards.
    with dg.DagsterInstance.from_config(str(report.dagster_home)) as instance:
        runs = instance.get_run_records()
        assert len(runs) == 13 + report.trigger_runs
        assert {r.dagster_run.job_name for r in runs} == {"stop_loss_job", "trading_day_job"}
    assert "HEALTHY" in text and "BUY:SELL" in text
