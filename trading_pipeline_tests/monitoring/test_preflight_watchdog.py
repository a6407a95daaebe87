"""Pre-flight GO/NO-GO and the external watchdog: every broken piece is a named NO, never silence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from trading_pipeline.automation.registry import AUTOMATION
from trading_pipeline.broker.factory import broker_from_settings
from trading_pipeline.cli.main import main
from trading_pipeline.monitoring.preflight import render, run_preflight
from trading_pipeline.settings import Settings
from trading_pipeline.store.alerts_repository import firing_alerts, set_trading_state
from trading_pipeline.store.database import Database
from trading_pipeline.store.migrate import upgrade
from trading_pipeline_tests.automation_fixtures import beat, project_instance, stop_by_hand
from trading_pipeline_tests.sim_fixtures import running_sim

NY = ZoneInfo("America/New_York")
TUESDAY_0855 = datetime(2026, 11, 24, 8, 55, tzinfo=NY)


@pytest.fixture
def sim():
    with running_sim(realtime=False) as simulator:
        yield simulator


@pytest.fixture
def instance(tmp_path):
    with project_instance(tmp_path / "home") as inst:
        yield inst


def preflight(instance, db, sim_url: str | None, *, now=TUESDAY_0855, env=None, **kw):
    environ = {
        "TRADING_PIPELINE_BROKER": "sim",
        "TRADING_PIPELINE_ALERTS": "log-only",
        **({"ALPACA_TRADING_URL": sim_url} if sim_url else {}),
        **(env or {}),
    }
    settings = Settings.from_env(environ)
    report = run_preflight(
        now=now,
        settings=settings,
        instance=instance,
        db=db,
        environ=environ,
        broker_factory=lambda: broker_from_settings(settings, environ, timeout=2.0),
        automation=AUTOMATION,
        **kw,
    )
    return report, {item.name: item for item in report.items}


def test_everything_green_is_go(instance, db: Database, sim) -> None:
    beat(instance, at=TUESDAY_0855 - timedelta(seconds=20))
    report, items = preflight(instance, db, sim.url)
    assert report.go, render(report)
    assert items["session today"].detail == "09:30–16:00 ET"
    assert items["schedule stop_loss_schedule"].detail == "RUNNING (default in code)"
    assert render(report).splitlines()[0] == "pre-flight: GO"


def test_each_broken_piece_is_a_named_no_go(instance, db: Database, sim) -> None:
    beat(instance, at=TUESDAY_0855 - timedelta(minutes=5))  # a daemon that died 5 minutes ago
    stop_by_hand(instance, "stop_loss_schedule")
    set_trading_state(db, halted=True, actor="ops", reason="testing the switch")
    report, items = preflight(instance, db, sim.url, min_buying_power=Decimal("10000000"))
    assert not report.go
    assert (
        items["schedule stop_loss_schedule"].ok is False
        and "set in the UI" in items["schedule stop_loss_schedule"].detail
    )
    assert items["daemon SCHEDULER"].ok is False and "300s ago" in items["daemon SCHEDULER"].detail
    assert items["kill switch"].ok is False and "trading-pipeline resume" in items["kill switch"].detail
    assert items["buying power"].ok is False
    assert items["broker"].ok and items["account"].ok  # only what is broken is NO
    text = render(report)
    assert text.startswith("pre-flight: NO-GO") and "NO-GO  kill switch" in text


def test_holiday_unreachable_broker_and_missing_keys(instance, db: Database) -> None:
    beat(instance, at=datetime(2026, 11, 26, 8, 55, tzinfo=NY))
    report, items = preflight(instance, db, "http://127.0.0.1:1", now=datetime(2026, 11, 26, 8, 55, tzinfo=NY))
    assert "Thanksgiving" in items["session today"].detail and not items["session today"].ok
    assert not report.go
    assert not items["broker"].ok and "unreachable" in items["broker"].detail
    _, items = preflight(instance, db, None, env={"TRADING_PIPELINE_BROKER": "alpaca"})
    assert items["environment"].detail == "missing ALPACA_API_KEY, ALPACA_SECRET_KEY"
    assert not items["broker"].ok and "ALPACA_API_KEY" in items["broker"].detail


def test_expected_halt_is_go_for_the_switch(instance, db: Database, sim) -> None:
    set_trading_state(db, halted=True, actor="ops", reason="earnings day")
    _, items = preflight(instance, db, sim.url, expect_halted=True)
    assert items["kill switch"].ok and "HALTED" in items["kill switch"].detail


def run_cli(monkeypatch, capsys, env: dict[str, str], *argv: str) -> tuple[int, str]:
    for name in ("DAGSTER_HOME", "DATABASE_URL", "TRADING_PIPELINE_ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_watchdog_cli_with_a_stale_heartbeat_is_unhealthy(tmp_path, monkeypatch, capsys) -> None:
    home = tmp_path / "home"
    with project_instance(home) as instance:
        beat(instance, at=datetime.now(UTC) - timedelta(minutes=5))
    db_url = f"sqlite:///{tmp_path / 'trading.db'}"
    with Database(db_url) as db:
        upgrade(db)
    env = {"DAGSTER_HOME": str(home), "DATABASE_URL": db_url}
    code, out = run_cli(monkeypatch, capsys, env, "watchdog")
    assert code == 1 and out.startswith("watchdog: UNHEALTHY")
    assert "BAD  daemon SCHEDULER" in out and "limit 90s" in out
    with Database(db_url) as db:
        keys = {a.key for a in firing_alerts(db)}
    assert keys == {"dagster_daemon"}  # one incident, one alert, however many daemon threads stopped
    # Heartbeats fresh again: the daemon lines recover (the alert resolves).
    with project_instance(home) as instance:
        beat(instance, at=datetime.now(UTC))
    code, out = run_cli(monkeypatch, capsys, env, "watchdog")
    assert "OK   daemon SCHEDULER" in out
    with Database(db_url) as db:
        assert "dagster_daemon" not in {a.key for a in firing_alerts(db)}


def test_watchdog_and_preflight_without_an_instance_are_not_silent(tmp_path, monkeypatch, capsys) -> None:
    env = {"TRADING_PIPELINE_DATA_DIR": str(tmp_path)}
    code, out = run_cli(monkeypatch, capsys, env, "watchdog")
    assert code == 1 and "DAGSTER_HOME is not set" in out
    bad_home = tmp_path / "bad"
    bad_home.mkdir()
    (bad_home / "dagster.yaml").write_text("concurrency: [oops\n")
    code, out = run_cli(monkeypatch, capsys, {**env, "DAGSTER_HOME": str(bad_home)}, "preflight")
    assert code == 1 and "cannot load the Dagster instance" in out


def test_halt_and_resume_are_recorded_with_who_and_why(tmp_path, monkeypatch, capsys) -> None:
    env = {"TRADING_PIPELINE_DATA_DIR": str(tmp_path)}
    assert run_cli(monkeypatch, capsys, env, "db", "upgrade")[0] == 0
    code, out = run_cli(monkeypatch, capsys, env, "halt", "--reason", "fat finger", "--actor", "ana")
    assert code == 0 and "HALTED" in out and "ana" in out
    code, out = run_cli(monkeypatch, capsys, env, "resume", "--reason", "fixed", "--actor", "ana")
    assert code == 0 and "resumed" in out
    assert run_cli(monkeypatch, capsys, env, "halt", "--reason", "  ")[0] == 2


def test_watchdog_names_a_location_that_does_not_load(tmp_path, monkeypatch, capsys) -> None:
    """What no sensor can report: the code location failing to load, so nothing of ours runs at all."""
    home = tmp_path / "home"
    with project_instance(home) as instance:
        beat(instance, at=datetime.now(UTC))
    db_url = f"sqlite:///{tmp_path / 'trading.db'}"
    with Database(db_url) as db:
        upgrade(db)
    code_file = tmp_path / "location.py"
    code_file.write_text("raise ImportError(\"No module named 'momentum_plus'\")\n")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_file:\n      relative_path: {code_file}\n      location_name: broken\n"
    )
    env = {"DAGSTER_HOME": str(home), "DATABASE_URL": db_url}
    code, out = run_cli(monkeypatch, capsys, env, "watchdog", "--workspace", str(workspace))
    assert code == 1
    assert "BAD  code location broken" in out and "No module named 'momentum_plus'" in out
    with Database(db_url) as db:
        alert = {a.key: a for a in firing_alerts(db)}["code_location"]
    assert "fails to load, so no schedule or sensor runs" in alert.message
    assert f"dagster definitions validate -w {workspace}" in alert.message
    # Fixed: the location loads, the alert recovers.
    code_file.write_text("import dagster as dg\n\ndefs = dg.Definitions()\n")
    code, out = run_cli(monkeypatch, capsys, env, "watchdog", "--workspace", str(workspace))
    assert "OK   code location broken" in out
    with Database(db_url) as db:
        assert "code_location" not in {a.key for a in firing_alerts(db)}


def test_watchdog_alert_for_an_unmigrated_db_says_why_and_what_to_do(tmp_path, monkeypatch, capsys, caplog) -> None:
    home = tmp_path / "home"
    with project_instance(home) as instance:
        beat(instance, at=datetime.now(UTC))
    empty_db = f"sqlite:///{tmp_path / 'empty.db'}"
    Database(empty_db).dispose()
    env = {"DAGSTER_HOME": str(home), "DATABASE_URL": empty_db}
    with caplog.at_level("ERROR", logger="trading_pipeline.alerts"):
        code, out = run_cli(monkeypatch, capsys, env, "watchdog")
    assert code == 1 and "BAD  trading DB" in out
    alert_lines = [r.getMessage() for r in caplog.records if "trading DB" in r.getMessage()]
    assert alert_lines and "trading-pipeline db upgrade" in alert_lines[0]
    assert "see stderr" not in out and all("see stderr" not in line for line in alert_lines)
