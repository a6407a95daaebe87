"""System health read from the Dagster instance: daemon heartbeats, schedule/sensor states, stop-loss runs.

One implementation serves the watchdog sensor, the external `trading-pipeline watchdog`, pre-flight and
`status`, so they can never disagree about what "healthy" means.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster import DagsterRunStatus, RunsFilter
from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

from trading_pipeline.domain.calendar import NEW_YORK, session_status
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.steps.entries import RISK_ACTOR
from trading_pipeline.store import alerts_repository as alerts_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

DEFAULT_HEARTBEAT_TOLERANCE = timedelta(seconds=90)  # Dagster's own default (1800 s) hides a dead daemon
DEFAULT_STOP_LOSS_STALE_AFTER = timedelta(minutes=6)
QUEUE_STUCK_AFTER = timedelta(minutes=2)
DAEMON_ALERT_KEY = "dagster_daemon"  # one incident however many of its threads stop beating
DAEMON_ACTION = (
    "start or restart `dagster-daemon run` with this DAGSTER_HOME (systemd: `systemctl restart "
    "trading-pipeline-daemon`); until it runs no schedule, sensor or queued run moves"
)


@dataclass(frozen=True, slots=True)
class HealthItem:
    """One judged piece of the system. `alert_key` names the incident, so the sensor, the external watchdog and
    pre-flight that notice the same thing share one alert; `action` says what a person should do about it."""

    name: str
    ok: bool
    detail: str
    alert_key: str | None = None
    action: str = ""

    def alert_text(self) -> str:
        """What the person who reads the alert needs: what, since when and the last error (in `detail`), and
        what to do — never a pointer to a log they cannot see."""
        return f"{self.detail}. What to do: {self.action}" if self.action else self.detail


def daemon_health(
    instance: dg.DagsterInstance,
    *,
    now: datetime,
    tolerance: timedelta = DEFAULT_HEARTBEAT_TOLERANCE,
) -> list[HealthItem]:
    """One item per daemon this instance needs (scheduler, sensor, queued-run coordinator, monitoring…)."""
    beats = instance.get_daemon_heartbeats()
    items = []
    for daemon in instance.get_required_daemon_types():
        beat = beats.get(daemon)
        if beat is None:
            items.append(
                HealthItem(
                    f"daemon {daemon}",
                    False,
                    "no heartbeat ever recorded on this instance",
                    DAEMON_ALERT_KEY,
                    DAEMON_ACTION,
                )
            )
            continue
        beat_at = datetime.fromtimestamp(beat.timestamp, UTC)
        age = now - beat_at
        ok = age <= tolerance
        errors = f"; errors: {beat.errors[0].message.splitlines()[0]}" if getattr(beat, "errors", None) else ""
        detail = (
            f"last heartbeat {age.total_seconds():.0f}s ago at {beat_at.astimezone(NEW_YORK):%H:%M:%S} ET "
            f"(limit {tolerance.total_seconds():.0f}s){errors}"
        )
        items.append(HealthItem(f"daemon {daemon}", ok and not errors, detail, DAEMON_ALERT_KEY, DAEMON_ACTION))
    return items


@dataclass(frozen=True, slots=True)
class Automation:
    """The schedules and sensors the code defines, which the instance's states are compared with. Whoever wires
    the product (definitions, the CLI) passes them in, so monitoring never imports the automation it judges."""

    schedules: Sequence[dg.ScheduleDefinition]
    sensors: Sequence[dg.SensorDefinition]


def automation_states(instance: dg.DagsterInstance, automation: Automation) -> list[HealthItem]:
    """Every schedule and sensor in code, with the state a user set in the UI if any, else the code default."""
    stored = {(state.instigator_type, state.name): state.status for state in instance.all_instigator_state()}
    items = []
    pairs: Iterable[tuple[InstigatorType, str, str]] = [
        *((InstigatorType.SCHEDULE, s.name, s.default_status.value) for s in automation.schedules),
        *((InstigatorType.SENSOR, s.name, s.default_status.value) for s in automation.sensors),
    ]
    for kind, name, default in pairs:
        status = stored.get((kind, name))
        if status in (None, InstigatorStatus.DECLARED_IN_CODE):
            effective, source = default, "default in code"
        else:
            effective, source = (
                "RUNNING"
                if status in (InstigatorStatus.RUNNING, InstigatorStatus.AUTOMATICALLY_RUNNING)
                else "STOPPED",
                "set in the UI",
            )
        ok = effective == "RUNNING"
        label = f"{kind.value.lower()} {name}"
        action = (
            f"turn it back on in the UI (Automation → {name} → toggle on); until then it does not run" if not ok else ""
        )
        items.append(
            HealthItem(
                label, ok, f"{label} is {effective} ({source})" if not ok else f"{effective} ({source})", None, action
            )
        )
    return items


@dataclass(frozen=True, slots=True)
class StopLossDiagnosis:
    ok: bool
    case: str  # ok | market_closed | runs_failing | runs_stuck | runs_not_launched
    detail: str
    last_success_at: datetime | None


def stop_loss_freshness(
    instance: dg.DagsterInstance,
    *,
    now: datetime,
    stale_after: timedelta = DEFAULT_STOP_LOSS_STALE_AFTER,
) -> StopLossDiagnosis:
    """During a session: is the last successful stop-loss run recent? If not, say which case it is."""
    last = instance.get_run_records(RunsFilter(job_name=STOP_LOSS_JOB, statuses=[DagsterRunStatus.SUCCESS]), limit=1)
    last_at = datetime.fromtimestamp(last[0].end_time, UTC) if last and last[0].end_time else None
    session = session_status(now)
    if not session.in_session:
        return StopLossDiagnosis(True, "market_closed", session.reason, last_at)
    # Give the session time to produce its first successful run before judging it.
    if session.session_open is not None and now - session.session_open < stale_after:
        return StopLossDiagnosis(True, "ok", "session just opened", last_at)
    age = now - last_at if last_at else None
    if age is not None and age <= stale_after:
        return StopLossDiagnosis(True, "ok", f"last successful stop-loss run {age.total_seconds():.0f}s ago", last_at)
    since = (last_at or now - stale_after * 3).timestamp()
    recent = [
        r
        for r in instance.get_run_records(RunsFilter(job_name=STOP_LOSS_JOB), limit=30)
        if r.create_timestamp.timestamp() >= since
    ]
    when = f"{age.total_seconds() / 60:.0f} min ago" if age else "never"
    failed = [r for r in recent if r.dagster_run.status == DagsterRunStatus.FAILURE]
    waiting = [
        r
        for r in recent
        if r.dagster_run.status in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING)
        and now - r.create_timestamp.astimezone(UTC) > QUEUE_STUCK_AFTER
    ]
    if failed:
        return StopLossDiagnosis(
            False,
            "runs_failing",
            f"last successful stop-loss run {when}; {len(failed)} of {len(recent)} runs since "
            f"then FAILED (latest {failed[0].dagster_run.run_id})",
            last_at,
        )
    if waiting:
        oldest = waiting[-1]
        return StopLossDiagnosis(
            False,
            "runs_stuck",
            f"last successful stop-loss run {when}; {len(waiting)} runs stuck in the queue "
            f"(oldest {oldest.dagster_run.run_id}, {oldest.dagster_run.status.value}) — "
            "is the run coordinator daemon alive, or a concurrency slot held?",
            last_at,
        )
    return StopLossDiagnosis(
        False,
        "runs_not_launched",
        f"last successful stop-loss run {when}; no stop-loss runs were launched since — is "
        "stop_loss_schedule stopped, or the daemon down?",
        last_at,
    )


DAILY_LOSS_ALERT_KEY = "risk:daily_loss"  # what the entries/closes assets fire when the daily loss halts trading


def kill_switch_items(db: Database) -> list[HealthItem]:
    """A halt in force is an incident someone must know about (one alert, a recovery on resume): a switch
    left on after maintenance silently stops all trading. A halt by the daily-loss limit is that alert's
    incident, so it shares its key instead of alerting twice."""
    state = alerts_repo.current_trading_state(db)
    if not state.halted:
        return [
            HealthItem("kill switch", True, "trading (not halted)", "kill_switch"),
            HealthItem("kill switch", True, "trading (not halted)", DAILY_LOSS_ALERT_KEY),
        ]
    since = f"{state.changed_at:%Y-%m-%d %H:%M} UTC" if state.changed_at else "an unknown time"
    key = DAILY_LOSS_ALERT_KEY if state.actor == RISK_ACTOR else "kill_switch"
    detail = (
        f"kill switch ON since {since} (by {state.actor}: {state.reason}): no new entries; stop-loss sweeps "
        "keep protecting open positions"
    )
    return [
        HealthItem(
            "kill switch",
            False,
            detail,
            key,
            'if the halt is no longer meant, `trading-pipeline resume --reason "..."`',
        )
    ]


EXITS_NOT_FILLING_AFTER = timedelta(seconds=90)  # a market exit fills in seconds; 75 s is the sweep's own grace


def unfilled_exits_item(db: Database, now: datetime, after: timedelta = EXITS_NOT_FILLING_AFTER) -> HealthItem:
    """Exit orders the broker accepted but has not filled: the position is still held while the DB says it
    is being closed — no check of open positions sees it, so it is judged here, from the `closing` rows."""
    stuck = [
        t
        for t in trades_repo.closing_trades(db)
        if t.closing_started_at is not None and now - t.closing_started_at > after
    ]
    if not stuck:
        return HealthItem("exits filling", True, "no exit order waiting for a fill", "exits_not_filling")
    oldest = min(t.closing_started_at for t in stuck if t.closing_started_at is not None)
    names = ", ".join(f"{t.symbol} ({t.close_client_order_id})" for t in stuck[:5])
    return HealthItem(
        "exits filling",
        False,
        f"{len(stuck)} exit order(s) accepted by the broker but not filled for over {after.total_seconds():.0f} "
        f"s, the oldest since {oldest.astimezone(NEW_YORK):%H:%M:%S} ET: {names}; the positions are still held",
        "exits_not_filling",
        "look the orders up at the broker by client_order_id (a limit or a halted symbol?); cancel one and the next "
        "stop-loss run sends a fresh market exit",
    )
