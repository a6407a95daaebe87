"""Sensors: react to crossed stops within seconds, and make every failure reach a person.

- stop_trigger_sensor: one multi-symbol quote request every 10 s; a crossed stop → a stop-loss run now.
- run_failure_alert_sensor / run_success_recovery_sensor: any job's failure alerts; the next success recovers.
- asset_check_alert_sensor: only blocking ERROR checks fail a run — every other failed check reaches people
  only through this sensor, which reads each check's latest evaluation (a cursor per check).
- stop_loss_watchdog_sensor: in a session, no successful stop-loss run for too long → alert with the case.
- automation_health_sensor: the instance's tick history — a schedule or sensor whose ticks fail, a schedule
  that stopped ticking, runs stuck in the queue → one alert each (the external watchdog uses the same keys).
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from trading_pipeline.automation.jobs import stop_loss_job
from trading_pipeline.checks.metadata import ALERT_KEY_METADATA
from trading_pipeline.domain.exits import InvalidQuote, decide_exit
from trading_pipeline.domain.jsonsafe import to_jsonable
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.monitoring.health import (
    DAILY_LOSS_ALERT_KEY,
    DEFAULT_STOP_LOSS_STALE_AFTER,
    HealthItem,
    kill_switch_items,
    stop_loss_freshness,
    unfilled_exits_item,
)
from trading_pipeline.monitoring.market_clock import read_market_clock
from trading_pipeline.monitoring.runs import in_flight_runs, root_cause
from trading_pipeline.monitoring.ticks import queue_health, tick_health
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.store import refusals_repository as refusals_repo
from trading_pipeline.store import trades_repository as trades_repo

RUNNING = dg.DefaultSensorStatus.RUNNING


def utc_now() -> datetime:
    """The watchdog's clock (one place, so tests can evaluate it at a chosen instant)."""
    return datetime.now(UTC)


# 10 s: a cross is seen 5 s after it on average (bench.reaction); each tick costs one clock and one quote
# request, 12 a minute of Alpaca's 200.
TRIGGER_INTERVAL_SECONDS = 10
# In a session every quote of the open positions older than this means the feed stopped, not a calm market
# (quotes move at least once a minute on the sim and far more often on Alpaca's feed).
FROZEN_FEED_AFTER = timedelta(seconds=90)


def frozen_feed(quotes: object, now: datetime) -> str | None:
    """Why the quotes cannot be trusted to show a crossing (every one of them stale), else None."""
    stamps = [q.timestamp for q in quotes]  # type: ignore[attr-defined]
    if not stamps or now - max(stamps) <= FROZEN_FEED_AFTER:
        return None
    return (
        f"quote feed frozen: the newest of {len(stamps)} quotes is {(now - max(stamps)).total_seconds():.0f}s old "
        f"at {now:%H:%M:%S} UTC (limit {FROZEN_FEED_AFTER.total_seconds():.0f}s) — crossed stops cannot be seen"
    )


@dg.sensor(
    job=stop_loss_job,
    minimum_interval_seconds=TRIGGER_INTERVAL_SECONDS,
    default_status=RUNNING,
    description=(
        "Every 10 s in a session: one multi-symbol quote request for the open positions; if any crossed its "
        "stop or take-profit, request a stop-loss run at once instead of waiting up to 2 minutes for the schedule."
    ),
)
def stop_trigger_sensor(
    context: dg.SensorEvaluationContext, database: TradingDatabase, broker: BrokerResource
) -> dg.RunRequest | dg.SkipReason:
    client = broker.client()
    clock = client.clock()
    if not clock.is_open:
        return dg.SkipReason("market closed (broker clock)")
    busy = in_flight_runs(context.instance, STOP_LOSS_JOB)
    if busy:
        return dg.SkipReason(f"stop-loss run {busy[0].dagster_run.run_id} already in flight")
    trades = trades_repo.open_trades(database.db)  # read + commit before the broker call
    if not trades:
        return dg.SkipReason("no open positions")
    batch = client.latest_quotes({t.symbol for t in trades})
    blind = frozen_feed(batch.quotes.values(), clock.timestamp)
    if blind:
        # Fail the tick (alerted by automation_health_sensor with this line): a trigger that sees only old
        # prices cannot see a crossed stop, and a frozen feed would otherwise look like a calm market.
        raise RuntimeError(blind)
    crossed: list[str] = []
    quoted_at: list[datetime] = []
    for trade in trades:
        quote = batch.quotes.get(trade.symbol)
        if quote is None:
            continue
        try:
            decision = decide_exit(trade.position_view(), quote)
        except InvalidQuote:
            continue  # the stop-loss run flags it and its check fails; the trigger only reacts to crosses
        if decision is not None:
            crossed.append(f"{trade.symbol}:{decision.reason.value}")
            quoted_at.append(quote.timestamp)
    if not crossed:
        return dg.SkipReason(f"{len(trades)} positions checked with {batch.requests} quote request(s); none crossed")
    # An exit the broker refused for a lasting reason (PDT, not tradable) is re-sent at its own cadence, not
    # every tick: the stop-loss runs report it beyond its stop meanwhile, and the schedule still sweeps.
    refused = {
        symbol
        for symbol, refusal in refusals_repo.refusals(database.db, {c.split(":")[0] for c in crossed}).items()
        if refusal.retry_after > clock.timestamp
    }
    kept = [(c, at) for c, at in zip(crossed, quoted_at, strict=True) if c.split(":")[0] not in refused]
    if not kept:
        return dg.SkipReason(
            f"crossed: {', '.join(sorted(set(crossed)))} — each exit refused by the broker recently "
            "(retried at its own cadence, see the closes step's `exits_refused`)"
        )
    crossed, quoted_at = [c for c, _ in kept], [at for _, at in kept]
    symbols = ",".join(sorted(set(crossed)))
    stamp = max(quoted_at).isoformat()
    context.log.info(f"stop trigger: {symbols} crossed at {stamp}; requesting a stop-loss run now")
    return dg.RunRequest(
        run_key=f"trigger:{symbols}:{stamp}"[:512],
        tags={
            "trading_pipeline/trigger": "stop_trigger",
            "trading_pipeline/trigger_symbols": symbols[:200],
            "trading_pipeline/trigger_quote_time": stamp,
        },
    )


@dg.run_failure_sensor(
    default_status=RUNNING,
    description="Alerts on the failure of any run of any job in this code location, with the error.",
)
def run_failure_alert_sensor(
    context: dg.RunFailureSensorContext, alerts: AlertsResource, database: TradingDatabase
) -> None:
    run = context.dagster_run
    error = context.failure_event.message or "run failed"
    run_error = getattr(context.failure_event.event_specific_data, "error", None)
    if run_error is not None:  # failed before any step, e.g. the strategy resource at run start: say why
        error = root_cause(run_error)
    step_errors = [
        f"{event.step_key}: {root_cause(event.step_failure_data.error)}"
        for event in context.get_step_failure_events()
        if event.step_failure_data and event.step_failure_data.error
    ]
    alerts.dispatcher(database.db, context.log).fire(
        key=f"run_failure:{run.job_name}",
        title=f"{run.job_name} run failed",
        message="; ".join(step_errors) or error,
        severity="critical" if run.job_name == STOP_LOSS_JOB else "error",
        source="run_failure_alert_sensor",
        details={"run_id": run.run_id, "job": run.job_name, "tags": dict(run.tags)},
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=RUNNING,
    description="When a job succeeds again after a failure alert, announces the recovery.",
)
def run_success_recovery_sensor(
    context: dg.RunStatusSensorContext, alerts: AlertsResource, database: TradingDatabase
) -> None:
    run = context.dagster_run
    alerts.dispatcher(database.db, context.log).resolve(
        f"run_failure:{run.job_name}", f"{run.job_name} run {run.run_id} succeeded"
    )


def check_failure_text(
    name: str, outcome: str | None, metadata: dict[str, object], protects: str | None, run_id: str
) -> str:
    """What failed (the evaluation's own words and its numbers), what the check protects, and where to look —
    not the pass condition alone, which says what should have been true but not what was."""
    numbers = ", ".join(
        f"{k} {v}" for k, v in metadata.items() if isinstance(v, int | float | str) and len(str(v)) <= 80
    )
    found = outcome or "the check failed"
    text = f"{name}: {found}" + (f" ({numbers})" if numbers else "")
    if protects:
        text += f". It protects: {protects}"
    asset = name.split(":")[0]
    return (
        f"{text}. What to do: open Assets → {asset} → Checks in the UI (run {run_id}) for the full table; the "
        "alert recovers by itself when the check passes again"
    )


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=RUNNING,
    description=(
        "Alerts on every new failed asset check evaluation (WARN or ERROR, blocking or not) with its description "
        "and metadata, and announces recovery when the check passes again. Only blocking ERROR checks fail a run; "
        "without this sensor every other failed check would be seen by nobody."
    ),
)
def asset_check_alert_sensor(
    context: dg.SensorEvaluationContext, alerts: AlertsResource, database: TradingDatabase
) -> dg.SkipReason:
    cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    asset_graph = context.repository_def.asset_graph
    dispatcher = alerts.dispatcher(database.db, context.log)
    fired, recovered = [], []
    for check_key in sorted(asset_graph.asset_check_keys, key=lambda k: k.to_user_string()):
        name = check_key.to_user_string()
        record = context.instance.get_latest_asset_check_evaluation_record(check_key)
        if record is None or record.event is None or record.id <= cursor.get(name, 0):
            continue
        evaluation = record.event.dagster_event.event_specific_data if record.event.dagster_event else None
        if evaluation is None or not hasattr(evaluation, "passed"):
            continue  # planned, not evaluated yet: look again next tick
        cursor[name] = record.id
        metadata = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
        # A check whose asset alerts on the same finding itself (pre-flight's NO-GO) names that alert's key.
        key = str(metadata.pop(ALERT_KEY_METADATA, f"check:{name}"))
        if evaluation.passed:
            if dispatcher.resolve(key, f"check {name} passes again"):
                recovered.append(name)
            continue
        spec = asset_graph.get_check_spec(check_key)
        dispatcher.fire(
            key=key,
            title=f"check failed: {name} ({evaluation.severity.value})",
            message=check_failure_text(name, evaluation.description, metadata, spec.description, record.run_id),
            severity="error" if evaluation.severity == dg.AssetCheckSeverity.ERROR else "warning",
            source="asset_check_alert_sensor",
            details={
                "run_id": record.run_id,
                "metadata": to_jsonable(metadata),
                "evaluation": evaluation.description or "",
            },
        )
        fired.append(name)
    context.update_cursor(json.dumps(cursor))
    return dg.SkipReason(f"alerted {len(fired)} failed checks {fired}; {len(recovered)} recovered {recovered}")


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=RUNNING,
    description=(
        "During a session: if the last successful stop-loss run is older than 6 minutes, alert and say whether runs "
        "are failing, not being launched (schedule stopped) or stuck in the queue. Recovers when runs succeed again."
    ),
)
def stop_loss_watchdog_sensor(
    context: dg.SensorEvaluationContext, alerts: AlertsResource, database: TradingDatabase
) -> dg.SkipReason:
    now = utc_now()
    diagnosis = stop_loss_freshness(context.instance, now=now, stale_after=DEFAULT_STOP_LOSS_STALE_AFTER)
    dispatcher = alerts.dispatcher(database.db, context.log)
    if diagnosis.ok:
        dispatcher.resolve("watchdog:stop_loss", diagnosis.detail)
        if diagnosis.case == "market_closed":
            return dg.SkipReason(f"not judged, market closed: {diagnosis.detail}")
        return dg.SkipReason(f"stop-loss protection healthy: {diagnosis.detail}")
    dispatcher.fire(
        key="watchdog:stop_loss",
        title=f"stop-loss protection stale: {diagnosis.case.replace('_', ' ')}",
        message=diagnosis.detail,
        severity="critical",
        source="stop_loss_watchdog_sensor",
        details={
            "case": diagnosis.case,
            "last_success_at": diagnosis.last_success_at,
            "limit_seconds": DEFAULT_STOP_LOSS_STALE_AFTER / timedelta(seconds=1),
        },
    )
    return dg.SkipReason(f"ALERT {diagnosis.case}: {diagnosis.detail}")


AUTOMATION_HEALTH_SENSOR = "automation_health_sensor"


def _incident_title(item: HealthItem) -> str:
    if item.alert_key in ("kill_switch", DAILY_LOSS_ALERT_KEY):
        return "kill switch ON: no new entries"
    if item.alert_key == "market_clock":
        return "broker clock and exchange calendar disagree"
    return f"{item.name.removesuffix(' ticks').removesuffix(' cadence')} unhealthy"


@dg.sensor(
    name=AUTOMATION_HEALTH_SENSOR,
    minimum_interval_seconds=30,
    default_status=RUNNING,
    description=(
        "Reads the instance's tick history every 30 s: any schedule or sensor of this code location whose ticks "
        "fail (which sensor, since when, the last error line, what to do), a running schedule that stopped "
        "ticking, runs stuck in the queue, the broker's clock disagreeing with the exchange calendar → one "
        "alert each, and a recovery message when it clears. It cannot "
        "see its own failures, a dead daemon or a location that does not load: `trading-pipeline watchdog` does."
    ),
)
def automation_health_sensor(
    context: dg.SensorEvaluationContext, alerts: AlertsResource, database: TradingDatabase, broker: BrokerResource
) -> dg.SkipReason:
    from trading_pipeline.monitoring.health import Automation

    repository = context.repository_def
    automation = Automation(schedules=list(repository.schedule_defs), sensors=list(repository.sensor_defs))
    now = utc_now()
    items = tick_health(context.instance, automation, now=now, exclude=[AUTOMATION_HEALTH_SENSOR])
    items.append(queue_health(context.instance, now=now))
    market = read_market_clock(broker.client(), now)
    items.append(market.health_item())  # one clock: a disagreement alerts
    items.append(unfilled_exits_item(database.db, market.at))  # closing rows are stamped with the broker's time
    items += kill_switch_items(database.db)
    dispatcher = alerts.dispatcher(database.db, context.log)
    bad = []
    for item in items:
        assert item.alert_key is not None
        if item.ok:
            dispatcher.resolve(item.alert_key, f"{item.name}: {item.detail}")
            continue
        bad.append(item.name)
        dispatcher.fire(
            key=item.alert_key,
            title=_incident_title(item),
            message=item.alert_text(),
            severity="warning" if item.alert_key == "kill_switch" else "critical" if "stop" in item.name else "error",
            source=AUTOMATION_HEALTH_SENSOR,
        )
    if bad:
        return dg.SkipReason(f"ALERT {len(bad)}: {', '.join(bad)}")
    return dg.SkipReason(f"{len(items)} items healthy: every schedule and sensor ticking without error")
