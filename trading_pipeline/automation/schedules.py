"""Schedules, in America/New_York, each skipping with a named reason when it must not run."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import dagster as dg

from trading_pipeline.automation.jobs import health_job, performance_job, preflight_job, stop_loss_job, trading_day_job
from trading_pipeline.domain.calendar import session_status
from trading_pipeline.domain.names import STOP_LOSS_JOB, TRADING_DAY_JOB
from trading_pipeline.monitoring.market_clock import read_market_clock
from trading_pipeline.monitoring.runs import in_flight_runs
from trading_pipeline.resources.broker import BrokerResource

NEW_YORK = "America/New_York"
NEW_YORK_TZ = ZoneInfo(NEW_YORK)
# Every 2 minutes around the clock: outside sessions each tick is a skip that says why, so the UI always
# shows recent ticks and a schedule that stopped ticking is detectable (monitoring.ticks) at any hour.
STOP_LOSS_CRON = "*/2 * * * *"
# The launcher tag Dagster's UI reads to show a run as launched by this schedule (the demo sets it too).
SCHEDULE_NAME_TAG = "dagster/schedule_name"


def once_per_session(
    context: dg.ScheduleEvaluationContext, name: str, *, partitioned: bool
) -> dg.RunRequest | dg.SkipReason:
    """One run per NYSE session day (run key = name + day; the day's partition if asked), else a named skip."""
    tick = context.scheduled_execution_time
    status = session_status(tick)
    if not status.trading_day:
        return dg.SkipReason(f"no session: {status.reason}")
    day = tick.astimezone(NEW_YORK_TZ).date().isoformat()
    return dg.RunRequest(run_key=f"{name}:{day}", partition_key=day if partitioned else None)


@dg.schedule(
    job=stop_loss_job,
    cron_schedule=STOP_LOSS_CRON,
    description=(
        "Protects every open position: a stop-loss sweep every 2 minutes while the market is open (the broker's "
        "clock decides; the exchange calendar when the broker cannot be asked). Ticks around the clock: outside "
        "sessions and while a stop-loss run is in flight each tick skips, saying why."
    ),
    execution_timezone=NEW_YORK,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def stop_loss_schedule(context: dg.ScheduleEvaluationContext, broker: BrokerResource) -> dg.RunRequest | dg.SkipReason:
    """Protects every open position: a stop-loss sweep every 2 minutes while the market is open.

    Open or closed is the broker's clock's answer (cross-checked by the health sensor), the calendar's when
    the broker is unreachable — a sweep then still goes in calendar hours, since protection must not wait
    for the broker's clock endpoint. Skips while a stop-loss run is still queued or running, naming it.
    """
    tick = context.scheduled_execution_time
    market = read_market_clock(broker.client(), tick)
    if not market.is_open:
        return dg.SkipReason(market.closed_reason())
    busy = in_flight_runs(context.instance, STOP_LOSS_JOB)
    if busy:
        run = busy[0].dagster_run
        return dg.SkipReason(f"stop-loss run {run.run_id} is still {run.status.value}; not stacking another")
    return dg.RunRequest(
        run_key=f"stop_loss:{tick.isoformat()}",
        tags={"trading_pipeline/trigger": "schedule", "trading_pipeline/market_time": market.at.isoformat()},
    )


@dg.schedule(
    job=trading_day_job,
    cron_schedule="30 9 * * 1-5",
    description="At the open of each session: the day's universe sample, its quotes, and the strategy's entries.",
    execution_timezone=NEW_YORK,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def trading_day_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Opens the day's positions at the open: universe sample → quotes → entries (skipped on non-sessions)."""
    busy = in_flight_runs(context.instance, TRADING_DAY_JOB)
    if busy:
        return dg.SkipReason(f"trading-day run {busy[0].dagster_run.run_id} is still in flight")
    return once_per_session(context, "trading_day", partitioned=True)


@dg.schedule(
    job=preflight_job,
    cron_schedule="0 9 * * 1-5",
    description="09:00 ET go/no-go before each session; NO-GO alerts half an hour before the open.",
    execution_timezone=NEW_YORK,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def preflight_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Checks, before the open, everything the day's protection depends on; a NO-GO alerts at 09:00, not 09:31."""
    return once_per_session(context, "preflight", partitioned=False)


@dg.schedule(
    job=health_job,
    cron_schedule="*/5 * * * *",
    execution_timezone=NEW_YORK,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every 5 minutes, day and night: the health → outcomes → P&L report, with history in the UI, and the "
        "BUY:SELL outcome check judged from outside the stop-loss runs (so it holds when they all fail)."
    ),
)
def health_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Health is reported around the clock: a daemon dying at night matters at the next open."""
    return dg.RunRequest(run_key=f"health:{context.scheduled_execution_time.isoformat()}")


@dg.schedule(
    job=performance_job,
    cron_schedule="15 16 * * 1-5",
    execution_timezone=NEW_YORK,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="16:15 ET on sessions: the day's P&L, win rate and return vs SPY, with the equity chart.",
)
def performance_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """End-of-day performance — after the health and outcomes it depends on have had the whole session."""
    return once_per_session(context, "performance", partitioned=True)
