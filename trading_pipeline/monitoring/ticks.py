"""Tick history: is every schedule and sensor ticking, and ticking without error? And is the run queue moving?

Read from the instance's own records (`instance.get_ticks` per instigator state), so the in-Dagster
`automation_health_sensor` and the external `trading-pipeline watchdog` judge the same facts and raise the same
alert keys: one incident, one alert, whoever sees it first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster import DagsterRunStatus, RunsFilter
from dagster._core.scheduler.instigation import InstigatorTick, InstigatorType, TickStatus
from dagster._utils.schedules import schedule_execution_time_iterator

from trading_pipeline.domain.calendar import NEW_YORK
from trading_pipeline.monitoring.health import Automation, HealthItem, automation_states
from trading_pipeline.monitoring.runs import root_cause

# The scheduler daemon evaluates due ticks within ~30 s; past this a due tick that left no record is missing.
SCHEDULE_TICK_GRACE = timedelta(seconds=90)
QUEUE_STUCK_AFTER = timedelta(minutes=5)
FINISHED = (TickStatus.SUCCESS, TickStatus.SKIPPED, TickStatus.FAILURE)


def tick_alert_key(kind: InstigatorType, name: str) -> str:
    return f"tick:{kind.value.lower()}:{name}"


@dataclass(frozen=True, slots=True)
class TickHistory:
    kind: InstigatorType
    name: str
    ticks: list[InstigatorTick]  # finished ticks, newest first


def tick_histories(
    instance: dg.DagsterInstance, automation: Automation, *, limit: int = 30
) -> dict[tuple[InstigatorType, str], TickHistory]:
    """The finished ticks of every schedule and sensor the code defines (states from every code location that
    served it — the demo's in-process one and the daemon's — merged, newest first)."""
    wanted = {(InstigatorType.SCHEDULE, s.name) for s in automation.schedules}
    wanted |= {(InstigatorType.SENSOR, s.name) for s in automation.sensors}
    histories = {key: TickHistory(key[0], key[1], []) for key in wanted}
    for state in instance.all_instigator_state():
        key = (state.instigator_type, state.name)
        if key not in wanted:
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=limit, statuses=list(FINISHED))
        histories[key].ticks.extend(ticks)
    for history in histories.values():
        history.ticks.sort(key=lambda tick: tick.timestamp, reverse=True)
    return histories


def _at(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M:%S ET")


def _error_line(tick: InstigatorTick) -> str:
    return root_cause(tick.error) if tick.error is not None else "no error recorded"


def failing_item(history: TickHistory) -> HealthItem:
    """The latest tick failed → one item saying since when, how many ticks in a row and the last error line."""
    label = f"{history.kind.value.lower()} {history.name}"
    key = tick_alert_key(history.kind, history.name)
    latest = history.ticks[0] if history.ticks else None
    if latest is None or latest.status != TickStatus.FAILURE:
        detail = (
            "no finished tick yet" if latest is None else f"last tick {latest.status.value} at {_at(latest.timestamp)}"
        )
        return HealthItem(f"{label} ticks", True, detail, alert_key=key)
    streak = 0
    for tick in history.ticks:
        if tick.status != TickStatus.FAILURE:
            break
        streak += 1
    first = history.ticks[streak - 1]
    more = "+" if streak == len(history.ticks) else ""
    detail = (
        f"{label} has failed every tick since {_at(first.timestamp)} ({streak}{more} ticks in a row); "
        f"last error: {_error_line(latest)}"
    )
    what = "sensor" if history.kind == InstigatorType.SENSOR else "schedule"
    action = (
        f"fix the cause named in the error (its full traceback is on the {what}'s tick history in the UI: "
        f"Automation → {history.name}); the {what} retries on every tick and a recovery message follows"
    )
    return HealthItem(f"{label} ticks", False, detail, alert_key=key, action=action)


def _last_due(schedule: dg.ScheduleDefinition, now: datetime) -> datetime | None:
    """The latest execution time of the schedule at or before `now − grace`."""
    horizon = (now - SCHEDULE_TICK_GRACE).timestamp()
    moments = schedule_execution_time_iterator(
        horizon, schedule.cron_schedule, schedule.execution_timezone, ascending=False
    )
    return next(moments, None)


def stalled_item(schedule: dg.ScheduleDefinition, history: TickHistory, now: datetime) -> HealthItem:
    """A running schedule whose due tick left no record: the scheduler is not evaluating it."""
    label = f"schedule {schedule.name}"
    key = f"stalled:schedule:{schedule.name}"
    if not history.ticks:
        return HealthItem(f"{label} cadence", True, "never ticked on this instance (no daemon has run it yet)", key)
    latest = history.ticks[0].timestamp
    due = _last_due(schedule, now)
    if due is None or latest >= due.timestamp() - 1:
        return HealthItem(f"{label} cadence", True, f"last tick at {_at(latest)}", key)
    detail = (
        f"{label} stopped ticking: its last tick was at {_at(latest)}, but a tick was due at "
        f"{_at(due.timestamp())} and none was recorded"
    )
    action = (
        "check that `dagster-daemon run` is running against this DAGSTER_HOME and its SCHEDULER heartbeat is "
        "fresh, and that the code location loads (the UI shows a load error on Deployment)"
    )
    return HealthItem(f"{label} cadence", False, detail, alert_key=key, action=action)


def tick_health(
    instance: dg.DagsterInstance, automation: Automation, *, now: datetime, exclude: Iterable[str] = ()
) -> list[HealthItem]:
    """Failing ticks of every running schedule and sensor, and running schedules that stopped ticking."""
    skip = set(exclude)
    running = {item.name for item in automation_states(instance, automation) if item.ok}
    histories = tick_histories(instance, automation)
    items = []
    for (kind, name), history in sorted(histories.items(), key=lambda pair: (pair[0][0].value, pair[0][1])):
        if name in skip or f"{kind.value.lower()} {name}" not in running:
            continue  # a stopped one is reported as stopped by automation_states, not as "not ticking"
        items.append(failing_item(history))
    for schedule in automation.schedules:
        if schedule.name not in skip and f"schedule {schedule.name}" in running:
            items.append(stalled_item(schedule, histories[(InstigatorType.SCHEDULE, schedule.name)], now))
    return items


def queue_health(
    instance: dg.DagsterInstance, *, now: datetime, stuck_after: timedelta = QUEUE_STUCK_AFTER
) -> HealthItem:
    """Runs waiting in the queue longer than `stuck_after`: the run coordinator is not dequeuing them."""
    queued = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.QUEUED]), limit=50)
    stuck = [r for r in queued if now - r.create_timestamp.astimezone(UTC) > stuck_after]
    if not stuck:
        return HealthItem("run queue", True, f"{len(queued)} queued, none waiting over {stuck_after}", "run_queue")
    oldest = min(stuck, key=lambda r: r.create_timestamp)
    age = (now - oldest.create_timestamp.astimezone(UTC)).total_seconds() / 60
    detail = (
        f"{len(stuck)} run(s) stuck in the queue; the oldest, {oldest.dagster_run.job_name} run "
        f"{oldest.dagster_run.run_id}, has waited {age:.0f} min (since {_at(oldest.create_timestamp.timestamp())})"
    )
    action = (
        "check the daemon's QUEUED_RUN_COORDINATOR heartbeat and the concurrency limits in dagster.yaml "
        "(a run holding the stop-loss slot blocks the next); cancel a hung run in the UI"
    )
    return HealthItem("run queue", False, detail, alert_key="run_queue", action=action)
