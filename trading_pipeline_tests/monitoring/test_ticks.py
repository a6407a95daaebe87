"""Every automation failure alerts: tick errors, stalled schedules and a stuck queue, read from the instance's
tick history — once per incident, with which schedule/sensor, since when, the last error and what to do, and
a recovery after; the sensor inside Dagster and the external watchdog share the alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster import DagsterRunStatus

import trading_pipeline.automation.sensors as sensors
from trading_pipeline.automation.registry import AUTOMATION
from trading_pipeline.broker.base import MarketClock
from trading_pipeline.definitions import defs
from trading_pipeline.monitoring.market_clock import read_market_clock
from trading_pipeline.monitoring.ticks import queue_health, tick_health
from trading_pipeline.monitoring.watchdog import alert_on, check_health
from trading_pipeline.resources.alert_delivery import AlertDispatcher
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.store import alerts_repository as alerts_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.automation_fixtures import beat, craft_run, craft_ticks, project_instance
from trading_pipeline_tests.sim_fixtures import running_sim

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 24, 11, 0, tzinfo=NY).astimezone(UTC)
NO_TABLE = "sqlite3.OperationalError: no such table: trades"


@pytest.fixture
def instance(tmp_path):
    with project_instance(tmp_path / "home") as inst:
        yield inst


@pytest.fixture(scope="module")
def sim():
    with running_sim(start=NOW, realtime=False, n_symbols=40) as simulator:
        yield simulator


@pytest.fixture
def alerts(database_url: str, sim) -> dict[str, object]:
    return {
        "alerts": AlertsResource(),
        "database": TradingDatabase(url=database_url),
        "broker": BrokerResource(kind="sim", trading_url=sim.url, data_url=sim.url),
    }


def firing(db: Database) -> dict[str, alerts_repo.AlertView]:
    return {a.key: a for a in alerts_repo.firing_alerts(db)}


def health_sensor(instance, alerts: dict, monkeypatch, now: datetime = NOW) -> dg.SkipReason:
    monkeypatch.setattr(sensors, "utc_now", lambda: now)
    with dg.build_sensor_context(
        instance=instance, repository_def=defs.get_repository_def(), resources=alerts
    ) as context:
        return sensors.automation_health_sensor(context)


def healthy_schedule_ticks(instance, now: datetime = NOW) -> None:
    """The stop-loss schedule ticked every 2 minutes up to now (so it is not 'stalled')."""
    craft_ticks(
        instance,
        "stop_loss_schedule",
        "SCHEDULE",
        [(now - timedelta(minutes=m), "SUCCESS", None) for m in (6, 4, 2, 0)],
    )


def test_a_failing_sensor_alerts_once_with_since_and_error_then_recovers(instance, alerts, db, monkeypatch) -> None:
    healthy_schedule_ticks(instance)
    failing = [(NOW - timedelta(seconds=s), "FAILURE", NO_TABLE) for s in (150, 120, 90, 60, 30)]
    craft_ticks(instance, "stop_trigger_sensor", "SENSOR", [(NOW - timedelta(seconds=180), "SKIPPED", None), *failing])
    result = health_sensor(instance, alerts, monkeypatch)
    assert "ALERT 1: sensor stop_trigger_sensor ticks" in result.skip_message
    alert = firing(db)["tick:sensor:stop_trigger_sensor"]
    assert alert.title == "sensor stop_trigger_sensor unhealthy" and alert.severity == "critical"
    # which sensor, since when, the last error line, what to do — never "see stderr"
    assert "has failed every tick since 2026-11-24 10:57:30 ET (5 ticks in a row)" in alert.message
    assert f"last error: {NO_TABLE}" in alert.message
    assert "What to do:" in alert.message and "stderr" not in alert.message
    # The next tick of the health sensor sees the same incident: counted, not sent again.
    health_sensor(instance, alerts, monkeypatch)
    assert firing(db)["tick:sensor:stop_trigger_sensor"].occurrences == 2
    assert len(alerts_repo.recent_alerts(db)) == 1
    # The sensor ticks fine again: a recovery, and nothing firing.
    craft_ticks(instance, "stop_trigger_sensor", "SENSOR", [(NOW + timedelta(seconds=1), "SKIPPED", None)])
    result = health_sensor(instance, alerts, monkeypatch)
    assert firing(db) == {} and "healthy" in result.skip_message
    assert alerts_repo.recent_alerts(db)[0].state == "resolved"


def test_a_schedule_that_stopped_ticking_while_runs_were_due(instance, alerts, db, monkeypatch) -> None:
    # Ticked every 2 minutes until 10:40, then nothing, although a tick was due every 2 minutes since.
    craft_ticks(
        instance,
        "stop_loss_schedule",
        "SCHEDULE",
        [(NOW - timedelta(minutes=m), "SKIPPED", None) for m in (24, 22, 20)],
    )
    health_sensor(instance, alerts, monkeypatch)
    alert = firing(db)["stalled:schedule:stop_loss_schedule"]
    assert "stop_loss_schedule stopped ticking: its last tick was at 2026-11-24 10:40:00 ET" in alert.message
    assert "a tick was due at 2026-11-24 10:58:00 ET" in alert.message
    assert "dagster-daemon run" in alert.message


def test_a_stuck_queue_alerts(instance, alerts, db, monkeypatch) -> None:
    healthy_schedule_ticks(instance)
    craft_run(instance, defs, DagsterRunStatus.QUEUED, NOW - timedelta(minutes=12))
    item = queue_health(instance, now=NOW)
    assert not item.ok and "has waited 12 min" in item.detail and "QUEUED_RUN_COORDINATOR" in item.action
    health_sensor(instance, alerts, monkeypatch)
    assert "run_queue" in firing(db)


def test_a_stopped_schedule_is_not_also_reported_as_not_ticking(instance) -> None:
    from trading_pipeline_tests.automation_fixtures import stop_by_hand

    stop_by_hand(instance, "stop_loss_schedule")
    items = {i.name: i for i in tick_health(instance, AUTOMATION, now=NOW)}
    assert "schedule stop_loss_schedule cadence" not in items and "schedule stop_loss_schedule ticks" not in items


def test_watchdog_and_sensor_share_one_alert_per_incident(instance, alerts, db, monkeypatch) -> None:
    """The same failing sensor seen by the in-Dagster sensor and by the external watchdog: one alert."""
    healthy_schedule_ticks(instance)
    craft_ticks(instance, "asset_check_alert_sensor", "SENSOR", [(NOW - timedelta(seconds=20), "FAILURE", NO_TABLE)])
    beat(instance, at=NOW - timedelta(seconds=10))
    health_sensor(instance, alerts, monkeypatch)
    report = check_health(
        instance,
        now=NOW,
        automation=AUTOMATION,
        heartbeat_tolerance=timedelta(seconds=90),
        stale_after=timedelta(minutes=6),
    )
    dispatcher = AlertDispatcher(db)
    alert_on(report, dispatcher)
    rows = alerts_repo.recent_alerts(db)
    tick_rows = [a for a in rows if a.key == "tick:sensor:asset_check_alert_sensor"]
    assert len(tick_rows) == 1 and tick_rows[0].occurrences == 2


def test_a_dead_daemon_is_one_alert_that_names_its_consequences(instance, db) -> None:
    healthy_schedule_ticks(instance, NOW - timedelta(minutes=10))  # the scheduler stopped with the daemon
    beat(instance, at=NOW - timedelta(minutes=10))
    report = check_health(
        instance,
        now=NOW,
        automation=AUTOMATION,
        heartbeat_tolerance=timedelta(seconds=90),
        stale_after=timedelta(minutes=6),
    )
    alert_on(report, AlertDispatcher(db))
    keys = set(firing(db))
    assert keys == {"dagster_daemon"}, keys
    alert = firing(db)["dagster_daemon"]
    assert alert.title.startswith("dagster-daemon not heartbeating (")
    assert "last heartbeat 600s ago at 10:50:00 ET (limit 90s)" in alert.message
    assert "meanwhile: schedule stop_loss_schedule cadence" in alert.message
    assert alert.message.count("What to do:") == 1


class ClockOnly:
    """A broker that can only tell the time (what read_market_clock asks of it)."""

    def __init__(self, at: datetime, is_open: bool) -> None:
        self.answer = MarketClock(timestamp=at, is_open=is_open, next_open=at, next_close=at)

    def clock(self) -> MarketClock:
        return self.answer


SATURDAY_10 = datetime(2026, 11, 28, 10, 0, tzinfo=NY).astimezone(UTC)


def test_one_clock_the_broker_decides_and_a_disagreement_is_a_finding() -> None:
    agree = read_market_clock(ClockOnly(NOW, True), NOW)
    assert agree.is_open and agree.disagreement is None and agree.health_item().ok
    # The broker says open on a Saturday (or the machine's calendar is wrong): followed, and flagged.
    odd = read_market_clock(ClockOnly(SATURDAY_10, True), SATURDAY_10)
    assert odd.is_open
    item = odd.health_item()
    assert not item.ok and item.alert_key == "market_clock"
    assert "broker's clock says the market is OPEN at 2026-11-28 10:00 ET" in item.detail
    assert "no NYSE session on weekends" in item.detail and item.action
    # Seconds around the close are not a disagreement (the broker rounds the instant its own way).
    close = datetime(2026, 11, 24, 16, 0, 30, tzinfo=NY).astimezone(UTC)
    assert read_market_clock(ClockOnly(close, False), close).disagreement is None


def test_a_clock_disagreement_alerts_through_the_health_sensor(instance, alerts, db, monkeypatch) -> None:
    healthy_schedule_ticks(instance)
    monkeypatch.setattr(BrokerResource, "client", lambda self: ClockOnly(SATURDAY_10, True))
    health_sensor(instance, alerts, monkeypatch)
    assert "OPEN at 2026-11-28 10:00 ET" in firing(db)["market_clock"].message
    monkeypatch.setattr(BrokerResource, "client", lambda self: ClockOnly(NOW, True))
    health_sensor(instance, alerts, monkeypatch)
    assert "market_clock" not in firing(db)


def test_a_kill_switch_left_on_is_one_alert_then_recovers(instance, alerts, db, monkeypatch) -> None:
    from trading_pipeline.store.alerts_repository import set_trading_state

    healthy_schedule_ticks(instance)
    set_trading_state(db, halted=True, actor="ops", reason="maintenance")
    health_sensor(instance, alerts, monkeypatch)
    health_sensor(instance, alerts, monkeypatch)
    alert = firing(db)["kill_switch"]
    assert alert.occurrences == 2 and alert.severity == "warning"
    assert "kill switch ON since" in alert.message and "(by ops: maintenance)" in alert.message
    assert "trading-pipeline resume" in alert.message
    set_trading_state(db, halted=False, actor="ops", reason="done")
    health_sensor(instance, alerts, monkeypatch)
    assert "kill_switch" not in firing(db)


def test_a_frozen_quote_feed_fails_the_stop_trigger_loudly() -> None:
    from trading_pipeline.automation.sensors import frozen_feed
    from trading_pipeline.domain.types import Quote

    def quote(age: int) -> Quote:
        return Quote("AAA", Decimal("10"), Decimal("10.02"), NOW - timedelta(seconds=age))

    assert frozen_feed([quote(30), quote(200)], NOW) is None  # one fresh quote: the feed moves
    text = frozen_feed([quote(120), quote(200)], NOW)
    assert text is not None and "quote feed frozen: the newest of 2 quotes is 120s old" in text


def test_a_daily_loss_halt_is_the_daily_loss_alert_not_a_second_one(instance, alerts, db, monkeypatch) -> None:
    from trading_pipeline.resources.alert_delivery import AlertDispatcher
    from trading_pipeline.steps.entries import RISK_ACTOR
    from trading_pipeline.store.alerts_repository import set_trading_state

    healthy_schedule_ticks(instance)
    AlertDispatcher(db).fire("risk:daily_loss", "daily loss limit breached — trading HALTED", "loss 5,100")
    set_trading_state(db, halted=True, actor=RISK_ACTOR, reason="daily loss 5,100 > 5,000")
    health_sensor(instance, alerts, monkeypatch)
    assert set(firing(db)) == {"risk:daily_loss"} and firing(db)["risk:daily_loss"].occurrences == 2
    set_trading_state(db, halted=False, actor="ops", reason="reviewed")
    health_sensor(instance, alerts, monkeypatch)
    assert firing(db) == {}


def test_exits_accepted_but_never_filled_are_one_alert(instance, alerts, db, sim, monkeypatch) -> None:
    from trading_pipeline.domain.types import ExitReason
    from trading_pipeline.store import claims_repository as claims_repo
    from trading_pipeline_tests.pipeline_fixtures import seed_positions
    from trading_pipeline_tests.sim_fixtures import tradable_symbols

    healthy_schedule_ticks(instance)
    [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1))
    claimed_at = sim.market.now - timedelta(minutes=4)  # the broker's clock stamps the claim
    assert claims_repo.claim_for_close(
        db, trade.id, client_order_id="tp-x-close-0", reason=ExitReason.STOP_LOSS, trigger_price=None, run_id="r",
        now=claimed_at,
    )  # fmt: skip
    health_sensor(instance, alerts, monkeypatch)
    alert = firing(db)["exits_not_filling"]
    assert "1 exit order(s) accepted by the broker but not filled for over 90 s" in alert.message
    assert f"{trade.symbol} (tp-x-close-0)" in alert.message and "What to do:" in alert.message
