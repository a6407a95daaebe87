"""Schedules evaluated at chosen instants: run requests in sessions, named skips outside them."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster import DagsterRunStatus
from dagster._utils.schedules import cron_string_iterator

from trading_pipeline.automation.schedules import (
    STOP_LOSS_CRONS,
    preflight_schedule,
    stop_loss_schedule,
    trading_day_schedule,
)
from trading_pipeline.definitions import defs
from trading_pipeline_tests.automation_fixtures import craft_run, project_instance

NY = ZoneInfo("America/New_York")


def at(month: int, day: int, hour: int, minute: int, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY)


@pytest.fixture
def instance(tmp_path):
    with project_instance(tmp_path / "home") as inst:
        yield inst


def evaluate(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance, when: datetime):
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    result = schedule(context)
    return result


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (at(11, 24, 10, 0), None),  # a Tuesday mid-morning
        (at(11, 24, 9, 29), "09:29 ET is before the NYSE open at 09:30 ET"),
        (at(11, 24, 9, 30), None),
        (at(11, 24, 16, 0), None),
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
    else:
        assert isinstance(result, dg.SkipReason), result
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


def test_crons_cover_the_session_every_two_minutes() -> None:
    start = at(11, 24, 0, 0).timestamp()
    ticks: set[datetime] = set()
    for cron in STOP_LOSS_CRONS:
        for tick in cron_string_iterator(start, cron, "America/New_York"):
            if tick.date() > at(11, 24, 0, 0).date():
                break
            ticks.add(tick.astimezone(NY))
    minutes = sorted(t.hour * 60 + t.minute for t in ticks)
    assert minutes[0] == 9 * 60 + 30 and minutes[-1] == 16 * 60
    assert minutes == list(range(9 * 60 + 30, 16 * 60 + 1, 2))
    assert stop_loss_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert stop_loss_schedule.execution_timezone == "America/New_York"


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
