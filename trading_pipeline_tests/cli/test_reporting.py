"""`trading-pipeline backfill` and `trading-pipeline report` end to end: environment → sim broker → Dagster
runs on the project-local instance → `daily_performance` → the terminal table and the chart file."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image

from trading_pipeline.cli.main import main
from trading_pipeline.cli.reporting import register
from trading_pipeline.domain.types import PositionSide, TradeStatus
from trading_pipeline.store.database import Database
from trading_pipeline.store.migrate import upgrade
from trading_pipeline.store.models import Trade
from trading_pipeline_tests.sim_fixtures import running_sim, tradable_symbols


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with running_sim(realtime=False, n_symbols=200) as sim:
        url = f"sqlite:///{tmp_path / 'trading.db'}"
        with Database(url) as db:
            upgrade(db)
            with db.transaction() as session:
                session.add(
                    Trade(
                        symbol=tradable_symbols(sim.market, 1)[0],
                        side=PositionSide.LONG,
                        qty=Decimal(5),
                        entry_price=Decimal(20),
                        entry_at=datetime(2026, 11, 16, 15, tzinfo=UTC),
                        status=TradeStatus.OPEN,
                        close_attempts=0,
                    )
                )
        for key, value in sim.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("TRADING_PIPELINE_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
        yield tmp_path


def test_backfill_then_report(environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", "performance", "--from", "2026-11-16", "--to", "2026-11-20"]) == 0
    out = capsys.readouterr().out
    assert "performance 2026-11-16 … 2026-11-20 (5 partitions): SUCCESS" in out
    home = environment / "data" / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [record] = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS

    assert main(["report", "--from", "2026-11-16", "--to", "2026-11-23"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for day in ("2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"):
        assert sum(line.startswith(day) for line in lines) == 1
    assert any(line.startswith("total (5 days)") for line in lines)
    assert "not computed yet (1 trading days): 2026-11-23" in out  # a gap is named, never skipped silently
    chart = environment / "data" / "charts" / "performance_2026-11-16_2026-11-23.png"
    assert f"chart: {chart.resolve()}" in out
    assert Image.open(chart).size == (800, 400)


def test_report_without_rows_says_how_to_compute_them(environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--from", "2026-11-02", "--to", "2026-11-06"]) == 1
    err = capsys.readouterr().err
    assert "no daily performance stored from 2026-11-02 to 2026-11-06" in err
    assert "trading-pipeline backfill performance --from 2026-11-02 --to 2026-11-06" in err


def test_reversed_range_and_bad_dates_are_usage_errors(environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--from", "2026-11-20", "--to", "2026-11-02"]) == 2
    assert "is after --to" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["backfill", "performance", "--from", "2026-13-01", "--to", "2026-11-20"])
    assert info.value.code == 2


def test_register_adds_both_commands_to_an_existing_parser() -> None:
    parser = argparse.ArgumentParser(prog="trading-pipeline")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["backfill", "universe", "--from", "2026-11-02", "--to", "2026-11-06"])
    assert args.asset == "universe" and callable(args.handler)
    args = parser.parse_args(["report", "--from", "2026-11-02", "--to", "2026-11-06", "--chart", "x.png"])
    assert args.chart == Path("x.png") and callable(args.handler)
