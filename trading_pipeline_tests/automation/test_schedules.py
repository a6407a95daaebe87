"""Schedules evaluated at chosen instants: run requests in sessions, named skips outside them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster import DagsterRunStatus
from dagster._utils.schedules import cron_string_iterator

from trading_pipeline.automation.schedules import (
    STOP_LOSS_CRON,
    preflight_schedule,
    stop_loss_schedule,
    trading_day_schedule,
)
from trading_pipeline.definitions import defs
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline_tests.automation_fixtures import craft_run, project_instance
from trading_pipeline_tests.sim_fixtures import running_sim

NY = ZoneInfo("America/New_York")


def at(month: int, day: int, hour: int, minute: int, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY)


@pytest.fixture
def instance(tmp_path):
    with project_instance(tmp_path / "home") as inst:
        yield inst


def evaluate(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance, when: datetime, broker_url: str = ""):
    """The schedule at `when`; the stop-loss schedule asks a sim broker whose clock stands at `when`."""
    if schedule.name != "stop_loss_schedule":
        return schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    if broker_url:
        return _with_broker(schedule, instance, when, broker_url)
    with running_sim(start=when, realtime=False, n_symbols=40) as sim:
        return _with_broker(schedule, instance, when, sim.url)


def _with_broker(schedule, instance, when: datetime, url: str):
    broker = BrokerResource(kind="sim", trading_url=url, data_url=url, request_timeout_seconds=1.0)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when, resources={"broker": broker}) as c:
        return schedule(c)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (at(11, 24, 10, 0), None),  # a Tuesday mid-morning
        (at(11, 24, 9, 29), "09:29 ET is before the NYSE open at 09:30 ET"),
        (at(11, 24, 9, 30), None),
        (at(11, 24, 15, 58), None),  # the last sweep of the day
        (at(11, 24, 16, 0), "at 16:00:00 ET, the edge of the NYSE session 09:30 ET–16:00 ET; next open Wed"),
        (at(11, 28, 10, 0), "Saturday 2026-11-28: no NYSE session on weekends"),
        (at(4, 3, 10, 0), "NYSE holiday (Good Friday)"),
        (at(11, 26, 10, 0), "NYSE holiday (Thanksgiving)"),
        (at(11, 27, 13, 30), "after today's early NYSE close at 13:00 ET (half day)"),
        (at(11, 27, 12, 58), None),  # the half day's morning is protected
        (at(3, 9, 9, 30), None),  # first session after the switch to daylight time (UTC offset changed)
        (at(3, 9, 9, 28), "before the NYSE open"),
        (at(11, 2, 9, 30), None),  # first session after the switch back to standard time
    ],
)
def test_stop_loss_schedule_at_chosen_instants(instance, when: datetime, expected: str | None) -> None:
    result = evaluate(stop_loss_schedule, instance, when)
    if expected is None:
        assert isinstance(result, dg.RunRequest), result
        assert result.run_key == f"stop_loss:{when.isoformat()}"
        assert result.tags["trading_pipeline/market_time"] == when.astimezone(UTC).isoformat()
    else:
        assert isinstance(result, dg.SkipReason), result
        assert result.skip_message.startswith("market closed (broker clock): ")
        assert expected in result.skip_message


def test_stop_loss_schedule_skips_while_a_run_is_in_flight(instance) -> None:
    run_id = craft_run(instance, defs, DagsterRunStatus.STARTED, created=at(11, 24, 9, 58))
    result = evaluate(stop_loss_schedule, instance, at(11, 24, 10, 0))
    assert isinstance(result, dg.SkipReason) and run_id in result.skip_message and "STARTED" in result.skip_message
    queued = craft_run(instance, defs, DagsterRunStatus.QUEUED, created=at(11, 24, 9, 59))
    assert queued  # a queued one counts as in flight too
    instance.delete_run(run_id)
    result = evaluate(stop_loss_schedule, instance, at(11, 24, 10, 0))
    assert isinstance(result, dg.SkipReason) and queued in result.skip_message


def test_stop_loss_schedule_ticks_every_two_minutes_around_the_clock() -> None:
    start = at(11, 28, 0, 0).timestamp()  # a Saturday: it ticks (and skips) then too
    ticks = []
    for tick in cron_string_iterator(start, STOP_LOSS_CRON, "America/New_York"):
        if tick.astimezone(NY).date() > at(11, 28, 0, 0).date():
            break
        ticks.append(tick.astimezone(NY))
    assert len(ticks) == 24 * 30 and ticks[0].hour == 0 and ticks[-1].hour == 23
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(ticks)} == {120.0}
    assert stop_loss_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert stop_loss_schedule.execution_timezone == "America/New_York"


def test_stop_loss_schedule_follows_the_calendar_when_the_broker_clock_is_unreachable(instance) -> None:
    result = evaluate(stop_loss_schedule, instance, at(11, 24, 10, 0), broker_url="http://127.0.0.1:1")
    assert isinstance(result, dg.RunRequest)  # protection does not wait for the broker's clock endpoint
    result = evaluate(stop_loss_schedule, instance, at(11, 28, 10, 0), broker_url="http://127.0.0.1:1")
    assert isinstance(result, dg.SkipReason)
    assert "market closed (exchange calendar; broker clock unreachable" in result.skip_message
    assert "no NYSE session on weekends" in result.skip_message


def test_trading_day_schedule_requests_the_day_partition(instance) -> None:
    result = evaluate(trading_day_schedule, instance, at(11, 24, 9, 30))
    assert isinstance(result, dg.RunRequest) and result.partition_key == "2026-11-24"
    skipped = evaluate(trading_day_schedule, instance, at(11, 26, 9, 30))
    assert isinstance(skipped, dg.SkipReason) and "Thanksgiving" in skipped.skip_message


def test_preflight_schedule_runs_on_sessions_only(instance) -> None:
    assert isinstance(evaluate(preflight_schedule, instance, at(11, 24, 9, 0)), dg.RunRequest)
    assert "weekends" in evaluate(preflight_schedule, instance, at(11, 28, 9, 0)).skip_message


def test_every_schedule_and_sensor_defaults_to_running() -> None:
    repository = defs.get_repository_def()
    assert {s.default_status for s in repository.schedule_defs} == {dg.DefaultScheduleStatus.RUNNING}
    assert {s.default_status for s in repository.sensor_defs} == {dg.DefaultSensorStatus.RUNNING}
    for schedule in repository.schedule_defs:
        assert schedule.description  # each says, in the UI, what it protects


def test_repo_dagster_yaml_limits_stop_loss_runs_to_one(tmp_path) -> None:
    from trading_pipeline.domain.names import CONCURRENCY_TAG

    with project_instance(tmp_path / "limits") as instance:
        limits = instance.get_settings("concurrency")["runs"]["tag_concurrency_limits"]
        assert {"key": CONCURRENCY_TAG, "value": "stop_loss", "limit": 1} in limits
        assert instance.run_monitoring_enabled
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    job = defs.resolve_job_def("stop_loss_job")
    assert job.tags[CONCURRENCY_TAG] == "stop_loss" and int(job.tags["dagster/max_runtime"]) > 0
    assert job.executor_def.name == "in_process"


def test_performance_and_health_schedules(instance) -> None:
    from trading_pipeline.automation.schedules import health_schedule, performance_schedule

    result = evaluate(performance_schedule, instance, at(11, 24, 16, 15))
    assert isinstance(result, dg.RunRequest) and result.partition_key == "2026-11-24"
    assert "Thanksgiving" in evaluate(performance_schedule, instance, at(11, 26, 16, 15)).skip_message
    assert isinstance(evaluate(health_schedule, instance, at(11, 28, 3, 0)), dg.RunRequest)  # day and night
