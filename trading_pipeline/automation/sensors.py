"""Sensors: react to crossed stops within seconds, and make every failure reach a person.

- stop_trigger_sensor: one multi-symbol quote request every 30 s; a crossed stop → a stop-loss run now.
- run_failure_alert_sensor / run_success_recovery_sensor: any job's failure alerts; the next success recovers.
- asset_check_alert_sensor: only blocking ERROR checks fail a run — every other failed check reaches people
  only through this sensor, which reads each check's latest evaluation (a cursor per check).
- stop_loss_watchdog_sensor: in a session, no successful stop-loss run for too long → alert with the case.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from trading_pipeline.automation.jobs import stop_loss_job
from trading_pipeline.domain.exits import InvalidQuote, decide_exit
from trading_pipeline.domain.jsonsafe import to_jsonable
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.monitoring.health import DEFAULT_STOP_LOSS_STALE_AFTER, stop_loss_freshness
from trading_pipeline.monitoring.runs import in_flight_runs, root_cause
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.store import trades_repository as trades_repo

RUNNING = dg.DefaultSensorStatus.RUNNING


def utc_now() -> datetime:
    """The watchdog's clock (one place, so tests can evaluate it at a chosen instant)."""
    return datetime.now(UTC)


TRIGGER_INTERVAL_SECONDS = 30


@dg.sensor(
    job=stop_loss_job,
    minimum_interval_seconds=TRIGGER_INTERVAL_SECONDS,
    default_status=RUNNING,
    description=(
        "Every 30 s in a session: one multi-symbol quote request for the open positions; if any crossed its "
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
        key = f"check:{name}"
        if evaluation.passed:
            if dispatcher.resolve(key, f"check {name} passes again"):
                recovered.append(name)
            continue
        spec = asset_graph.get_check_spec(check_key)
        metadata = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
        dispatcher.fire(
            key=key,
            title=f"check failed: {name} ({evaluation.severity.value})",
            message=spec.description or evaluation.description or "asset check failed",
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
