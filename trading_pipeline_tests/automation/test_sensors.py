"""Sensors evaluated against real instances with crafted run histories and check evaluations."""

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster import DagsterRunStatus

import trading_pipeline.automation.sensors as sensors
from trading_pipeline.definitions import defs
from trading_pipeline.domain.types import Quote
from trading_pipeline.resources.alert_delivery import AlertDispatcher
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.store import alerts_repository as alerts_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.automation_fixtures import craft_run, project_instance
from trading_pipeline_tests.pipeline_fixtures import seed_positions
from trading_pipeline_tests.sim_fixtures import running_sim, tradable_symbols

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 24, 11, 0, tzinfo=NY)  # a Tuesday, mid-session


@pytest.fixture
def instance(tmp_path):
    with project_instance(tmp_path / "home") as inst:
        yield inst


@pytest.fixture
def alerts(database_url: str) -> dict[str, object]:
    """The resources the alerting sensors need: the alerts channels and the trading DB they record into."""
    return {"alerts": AlertsResource(), "database": TradingDatabase(url=database_url)}


def firing(db: Database) -> dict[str, alerts_repo.AlertView]:
    return {a.key: a for a in alerts_repo.firing_alerts(db)}


# -- stop trigger -----------------------------------------------------------------------------------------


def trigger(instance, database_url: str, sim) -> dg.RunRequest | dg.SkipReason:
    resources = {
        "database": TradingDatabase(url=database_url),
        "broker": BrokerResource(kind="sim", trading_url=sim.url, data_url=sim.url),
    }
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        return sensors.stop_trigger_sensor(context)


def test_stop_trigger_requests_a_run_when_a_stop_is_crossed(instance, database_url: str, db: Database) -> None:
    with running_sim(realtime=False) as sim:
        trades = seed_positions(db, sim, tradable_symbols(sim.market, 5), qty=1)
        sim.reset_counters()
        quiet = trigger(instance, database_url, sim)
        assert isinstance(quiet, dg.SkipReason) and "5 positions checked with 1 quote request" in quiet.skip_message
        sim.market.gap(trades[2].symbol, -12)
        request = trigger(instance, database_url, sim)
        assert isinstance(request, dg.RunRequest)
        assert f"{trades[2].symbol}:stop_loss" in request.run_key
        assert request.tags["trading_pipeline/trigger"] == "stop_trigger"
        # Two evaluations, one multi-symbol quote request each.
        assert sim.requests("GET /v2/stocks/quotes/latest") == 2


def test_stop_trigger_skips_when_the_market_is_closed(instance, database_url: str, db: Database) -> None:
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    with running_sim(realtime=False, start=saturday) as sim:
        result = trigger(instance, database_url, sim)
    assert isinstance(result, dg.SkipReason) and "market closed" in result.skip_message


def test_stop_trigger_does_not_stack_on_an_in_flight_run(instance, database_url: str, db: Database) -> None:
    run_id = craft_run(instance, defs, DagsterRunStatus.STARTED, created=NOW)
    with running_sim(realtime=False) as sim:
        seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=1)
        result = trigger(instance, database_url, sim)
    assert isinstance(result, dg.SkipReason) and run_id in result.skip_message


def test_stop_trigger_fails_its_tick_when_every_quote_is_frozen(instance, database_url: str, db: Database) -> None:
    """Frozen prices cannot show a crossed stop: the tick fails (and is alerted), it does not skip as if calm."""
    with running_sim(realtime=False) as sim:
        trades = seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=1)
        for trade in trades:
            sim.market.stale(trade.symbol)
        sim.market.advance(timedelta(minutes=5))
        with pytest.raises(Exception, match="frozen"):
            trigger(instance, database_url, sim)
        sim.market.resume(trades[0].symbol)  # one live quote: the feed is not frozen, the tick judges it
        sim.market.advance(timedelta(minutes=1))
        assert isinstance(trigger(instance, database_url, sim), dg.SkipReason | dg.RunRequest)


def test_a_feed_whose_newest_quote_is_a_day_and_ten_seconds_old_is_frozen() -> None:
    """A day and 10 s is far past the limit, not 10 s (`timedelta.seconds` drops the days)."""
    now = NOW.astimezone(UTC)
    old = Quote("AAA", Decimal("99"), Decimal("99.1"), now - timedelta(days=1, seconds=10))
    assert sensors.frozen_feed([old], now) is not None
    assert sensors.frozen_feed([Quote("AAA", Decimal("99"), Decimal("99.1"), now - timedelta(seconds=10))], now) is None


# -- stop-loss watchdog --------------------------------------------------------------------------------------


def watchdog(instance, alerts: dict, monkeypatch, now: datetime = NOW) -> dg.SkipReason:
    monkeypatch.setattr(sensors, "utc_now", lambda: now.astimezone(UTC))
    with dg.build_sensor_context(instance=instance, resources=alerts) as context:
        return sensors.stop_loss_watchdog_sensor(context)


def test_watchdog_all_green(instance, alerts, db: Database, monkeypatch) -> None:
    craft_run(instance, defs, DagsterRunStatus.SUCCESS, NOW - timedelta(minutes=3), NOW - timedelta(minutes=2))
    result = watchdog(instance, alerts, monkeypatch)
    assert "healthy" in result.skip_message and firing(db) == {}


def test_watchdog_names_failing_runs_then_recovers(instance, alerts, db: Database, monkeypatch) -> None:
    craft_run(instance, defs, DagsterRunStatus.SUCCESS, NOW - timedelta(minutes=21), NOW - timedelta(minutes=20))
    failed = [
        craft_run(instance, defs, DagsterRunStatus.FAILURE, NOW - timedelta(minutes=m), NOW - timedelta(minutes=m))
        for m in (18, 10, 2)
    ]
    result = watchdog(instance, alerts, monkeypatch)
    assert "runs_failing" in result.skip_message
    alert = firing(db)["watchdog:stop_loss"]
    assert "failing" in alert.title and "3 of 3 runs" in alert.message and failed[-1] in alert.message
    assert alert.severity == "critical"
    # A repeat a minute later is counted, not re-sent.
    watchdog(instance, alerts, monkeypatch, NOW + timedelta(minutes=1))
    assert firing(db)["watchdog:stop_loss"].occurrences == 2
    # Runs succeed again → the alert resolves (a "recovered" message is delivered).
    craft_run(instance, defs, DagsterRunStatus.SUCCESS, NOW + timedelta(minutes=1), NOW + timedelta(minutes=2))
    assert "healthy" in watchdog(instance, alerts, monkeypatch, NOW + timedelta(minutes=3)).skip_message
    assert firing(db) == {}
    assert alerts_repo.recent_alerts(db)[0].state == "resolved"


def test_watchdog_names_runs_not_launched(instance, alerts, db: Database, monkeypatch) -> None:
    craft_run(instance, defs, DagsterRunStatus.SUCCESS, NOW - timedelta(minutes=11), NOW - timedelta(minutes=10))
    result = watchdog(instance, alerts, monkeypatch)
    assert "runs_not_launched" in result.skip_message
    assert "stop_loss_schedule stopped" in firing(db)["watchdog:stop_loss"].message


def test_watchdog_names_runs_stuck_in_the_queue(instance, alerts, db: Database, monkeypatch) -> None:
    craft_run(instance, defs, DagsterRunStatus.SUCCESS, NOW - timedelta(minutes=11), NOW - timedelta(minutes=10))
    stuck = craft_run(instance, defs, DagsterRunStatus.QUEUED, NOW - timedelta(minutes=8))
    result = watchdog(instance, alerts, monkeypatch)
    assert "runs_stuck" in result.skip_message
    assert stuck in firing(db)["watchdog:stop_loss"].message


def test_watchdog_is_quiet_outside_sessions(instance, alerts, db: Database, monkeypatch) -> None:
    result = watchdog(instance, alerts, monkeypatch, datetime(2026, 11, 26, 11, 0, tzinfo=NY))
    assert "market closed" in result.skip_message and "Thanksgiving" in result.skip_message
    assert firing(db) == {}


# -- asset-check alerts ----------------------------------------------------------------------------------

PASS = {"passed": True}


@dg.asset(
    check_specs=[dg.AssetCheckSpec("quote_fresh", asset="toy", description="Quotes are fresh enough to trade on.")]
)
def toy(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    passed = bool(context.run.tags.get("pass") == "1")
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name="quote_fresh",
                passed=passed,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"oldest_quote_age_seconds": 912.0},
            )
        ]
    )


def check_sensor(instance, alerts: dict, cursor: str | None) -> tuple[dg.SkipReason, str | None]:
    toy_defs = dg.Definitions(assets=[toy], sensors=[sensors.asset_check_alert_sensor], resources=alerts)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, repository_def=toy_defs.get_repository_def(), resources=alerts
    ) as context:
        result = sensors.asset_check_alert_sensor(context)
        return result, context.cursor


def test_a_new_failed_warn_check_is_alerted_once_then_recovers(instance, alerts, db: Database) -> None:
    assert dg.materialize([toy], instance=instance, tags={"pass": "0"}).success  # WARN: the run succeeds
    result, cursor = check_sensor(instance, alerts, None)
    assert "alerted 1 failed checks" in result.skip_message
    alert = firing(db)["check:toy:quote_fresh"]
    assert "WARN" in alert.title
    # What was found (its numbers), what the check protects, what to do — not the pass condition alone.
    assert alert.message.startswith("toy:quote_fresh: the check failed (oldest_quote_age_seconds 912.0)")
    assert "It protects: Quotes are fresh enough to trade on." in alert.message
    assert "What to do: open Assets → toy → Checks" in alert.message
    assert alert.severity == "warning"
    # Same evaluation, next tick: nothing new.
    result, cursor = check_sensor(instance, alerts, cursor)
    assert "alerted 0" in result.skip_message and firing(db)["check:toy:quote_fresh"].occurrences == 1
    dg.materialize([toy], instance=instance, tags={"pass": "1"})
    result, _ = check_sensor(instance, alerts, cursor)
    assert "1 recovered" in result.skip_message and firing(db) == {}


# -- run failures ------------------------------------------------------------------------------------------


@dg.op
def explode() -> None:
    raise RuntimeError("broker said no: 403 insufficient qty available")


@dg.job
def doomed() -> None:
    explode()


def test_run_failure_is_alerted_with_the_error(instance, alerts, db: Database) -> None:
    result = doomed.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources=alerts,
    ) as context:
        sensors.run_failure_alert_sensor(context.for_run_failure())
    alert = firing(db)["run_failure:doomed"]
    assert alert.title == "doomed run failed" and "insufficient qty available" in alert.message


# -- delivery ----------------------------------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    Receiver.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook?token=s3cret-token", Receiver
    server.shutdown()
    server.server_close()


def test_webhook_receives_firing_then_recovered(receiver, db: Database) -> None:
    url, handler = receiver
    dispatcher = AlertDispatcher(db, webhook_url=url, sleep=lambda s: None)
    outcome = dispatcher.fire("k", "stop-loss stale", "no run for 7 min", details={"at": NOW})
    assert outcome.sent and outcome.deliveries["webhook"] == "ok"
    assert handler.received[0]["state"] == "firing" and handler.received[0]["details"]["at"] == NOW.isoformat()
    dispatcher.resolve("k")
    assert handler.received[1]["state"] == "resolved" and handler.received[1]["title"].startswith("RECOVERED")
    assert "s3cret-token" not in repr(dispatcher)


def test_failing_webhook_is_recorded_and_never_raises(receiver, db: Database, caplog) -> None:
    url, handler = receiver
    handler.status = 500
    dispatcher = AlertDispatcher(db, webhook_url=url, webhook_attempts=3, sleep=lambda s: None)
    outcome = dispatcher.fire("k2", "title", "message")
    assert outcome.deliveries["webhook"] == "failed: HTTP 500 after 3 attempt(s)" and len(handler.received) == 3
    unreachable = AlertDispatcher(db, webhook_url="http://127.0.0.1:1/hook?token=s3cret-token", sleep=lambda s: None)
    result = unreachable.fire("k3", "title", "message")
    assert result.deliveries["webhook"].startswith("failed: ConnectionError")
    assert "s3cret-token" not in caplog.text
    stored = {a.key: a for a in alerts_repo.recent_alerts(db)}
    assert stored["k3"].deliveries["webhook"].startswith("failed")


def test_a_failing_webhook_does_not_fail_the_sensor(instance, database_url: str, db: Database, monkeypatch) -> None:
    broken = {
        "alerts": AlertsResource(webhook_url="http://127.0.0.1:1/x", webhook_timeout_seconds=0.5),
        "database": TradingDatabase(url=database_url),
    }
    monkeypatch.setattr("trading_pipeline.resources.alert_delivery.time.sleep", lambda s: None)
    craft_run(instance, defs, DagsterRunStatus.SUCCESS, NOW - timedelta(minutes=11), NOW - timedelta(minutes=10))
    result = watchdog(instance, broken, monkeypatch)
    assert "ALERT runs_not_launched" in result.skip_message
    assert firing(db)["watchdog:stop_loss"].deliveries["webhook"].startswith("failed")


def test_every_product_check_failure_reaches_the_alert_sensor(instance, alerts, db: Database) -> None:
    """Only blocking ERROR checks fail a run: every other check's failure must reach people via the sensor."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

    repository = defs.get_repository_def()
    keys = sorted(repository.asset_graph.asset_check_keys, key=lambda k: k.to_user_string())
    assert len(keys) >= 15
    for key in keys:
        instance.report_runless_asset_event(
            AssetCheckEvaluation(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=False,
                metadata={"why": "crafted"},
                severity=dg.AssetCheckSeverity.WARN,
            )
        )
    with dg.build_sensor_context(instance=instance, repository_def=repository, resources=alerts) as ctx:
        result = sensors.asset_check_alert_sensor(ctx)
    assert f"alerted {len(keys)} failed checks" in result.skip_message
    alerted = firing(db)
    for key in keys:
        alert = alerted[f"check:{key.to_user_string()}"]
        assert alert.message.startswith(f"{key.to_user_string()}: the check failed (why crafted)")
        assert repository.asset_graph.get_check_spec(key).description in alert.message
