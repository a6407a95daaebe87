"""`trading-pipeline status`: health first, in plain words, before any P&L."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from dagster import DagsterRunStatus

from trading_pipeline.automation.registry import AUTOMATION
from trading_pipeline.checks.registry import ALL_SPECS
from trading_pipeline.cli.main import main
from trading_pipeline.definitions import defs
from trading_pipeline.domain.types import ExitReason, OrderSide, PositionSide, Quote
from trading_pipeline.monitoring.status import build_status, render_status
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import record_firing
from trading_pipeline.store.database import Database
from trading_pipeline_tests.automation_fixtures import beat, craft_run, project_instance

SATURDAY = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
DAY = date(2026, 11, 28)


@pytest.fixture
def instance(tmp_path):
    with project_instance(tmp_path / "home") as inst:
        yield inst


def book_a_day(db: Database) -> None:
    """One winner closed today, one position open, marked by a stored quote."""
    at = SATURDAY - timedelta(hours=2)
    winner = trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            symbol="WIN",
            side=PositionSide.LONG,
            qty=Decimal(10),
            entry_price=Decimal(100),
            entry_at=at,
            stop_loss=Decimal(95),
        ),
    )
    claims_repo.claim_for_close(
        db, winner.id, client_order_id="tp-win", reason=ExitReason.TAKE_PROFIT, trigger_price=None, run_id="r1"
    )
    claims_repo.record_close(db, winner.id, client_order_id="tp-win", close_price=Decimal(106), closed_at=at)
    trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            symbol="HOLD",
            side=PositionSide.LONG,
            qty=Decimal(5),
            entry_price=Decimal(50),
            entry_at=at,
            stop_loss=Decimal(48),
        ),
    )
    runs_repo.save_quotes(db, [Quote("HOLD", Decimal("51.90"), Decimal("52.10"), at)], run_id="r1")
    for cid, side in (("b1", OrderSide.BUY), ("b2", OrderSide.BUY), ("s1", OrderSide.SELL)):
        orders_repo.upsert_order(
            db,
            orders_repo.OrderFields(
                client_order_id=cid,
                symbol="WIN",
                side=side,
                qty=Decimal(10),
                order_type="market",
                status="filled",
                submitted_at=at,
            ),
        )


def test_healthy_system_reports_health_then_outcomes_then_pnl(instance, db: Database) -> None:
    beat(instance, at=SATURDAY - timedelta(seconds=10))
    craft_run(instance, defs, DagsterRunStatus.SUCCESS, SATURDAY - timedelta(days=1), SATURDAY - timedelta(days=1))
    book_a_day(db)
    report = build_status(
        now=SATURDAY,
        day=DAY,
        instance=instance,
        instance_problem=None,
        db=db,
        db_problem=None,
        automation=AUTOMATION,
        check_specs=ALL_SPECS,
    )
    text = render_status(report)
    assert report.healthy, text
    assert text.splitlines()[0].startswith("HEALTH: OK")
    assert text.index("== system health ==") < text.index("== outcomes") < text.index("== P&L ==")
    assert report.outcomes["closes_by_reason"] == {"take_profit": 1}
    assert (report.outcomes["buys"], report.outcomes["sells"]) == (2, 1)
    assert report.pnl["realized_today"] == Decimal("60.00")  # (106 - 100) × 10
    assert report.pnl["unrealized"] == Decimal("10.00")  # (52.00 mid - 50) × 5


def test_broken_system_says_so_first_in_plain_words(instance, db: Database) -> None:
    beat(instance, at=SATURDAY - timedelta(minutes=10))  # the daemon died 10 minutes ago
    record_firing(
        db,
        key="watchdog:stop_loss",
        severity="critical",
        title="stop-loss protection stale",
        message="no run for 9 min",
        details={},
        source="test",
    )
    book_a_day(db)
    report = build_status(
        now=SATURDAY,
        day=DAY,
        instance=instance,
        instance_problem=None,
        db=db,
        db_problem=None,
        automation=AUTOMATION,
        check_specs=ALL_SPECS,
    )
    first = render_status(report).splitlines()[0]
    assert not report.healthy
    assert first.startswith("HEALTH: NOT OK") and "Do not trust the numbers below" in first
    assert "daemon SCHEDULER" in first and "600s ago" in first and "stop-loss protection stale" in first


def test_a_failed_error_check_makes_status_unhealthy(instance, db: Database) -> None:
    import dagster as dg
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

    beat(instance, at=SATURDAY)
    key = next(k for k in ALL_SPECS if k.name == "stops_honoured")
    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description="2 stop crosses not closed",
        )
    )
    report = build_status(
        now=SATURDAY,
        day=DAY,
        instance=instance,
        instance_problem=None,
        db=db,
        db_problem=None,
        automation=AUTOMATION,
        check_specs=ALL_SPECS,
    )
    assert not report.healthy and "closes:stops_honoured: 2 stop crosses not closed" in render_status(report)


def test_cli_json_without_an_instance(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TRADING_PIPELINE_DATA_DIR", str(tmp_path))
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    code = main(["status", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1 and payload["healthy"] is False
    assert payload["health"][0] == {
        "name": "dagster instance",
        "ok": False,
        "detail": "DAGSTER_HOME is not set: point it at the instance the daemon uses",
    }
    assert set(payload) == {
        "healthy",
        "day",
        "health",
        "warnings",
        "last_stop_loss_runs",
        "outcomes",
        "pnl",
        "levels_match_broker",
    }


def test_check_registry_matches_the_definitions() -> None:
    assert set(ALL_SPECS) == set(defs.resolve_asset_graph().asset_check_keys)


def test_a_halt_is_said_first(instance, db: Database) -> None:
    from trading_pipeline.store.alerts_repository import set_trading_state

    beat(instance, at=SATURDAY)
    set_trading_state(db, halted=True, actor="ana", reason="broker incident")
    report = build_status(
        now=SATURDAY,
        day=DAY,
        instance=instance,
        instance_problem=None,
        db=db,
        db_problem=None,
        automation=AUTOMATION,
        check_specs=ALL_SPECS,
    )
    first = render_status(report).splitlines()[0]
    assert first.startswith("HEALTH: NOT OK") and "kill switch: HALTED by ana: broker incident" in first
