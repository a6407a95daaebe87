"""`preflight`: the pre-market go/no-go, recorded in the UI with history, alerting on NO-GO."""

from datetime import UTC, datetime

import dagster as dg

from trading_pipeline.assets.context import guarded_broker, trading_date
from trading_pipeline.checks import preflight as preflight_checks
from trading_pipeline.checks.metadata import ALERT_KEY_METADATA, json_value, markdown_table, md, reasons_table
from trading_pipeline.monitoring.health import Automation
from trading_pipeline.monitoring.preflight import run_preflight
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.settings import Settings
from trading_pipeline.steps.clock import read_clock
from trading_pipeline.steps.corporate_actions import prepare_session
from trading_pipeline.store import alerts_repository as alerts_repo

PREFLIGHT_ALERT_KEY = "preflight"


def build_preflight_asset(automation: Automation) -> dg.AssetsDefinition:
    """The `preflight` asset, judging the schedules and sensors `definitions.py` wires in."""

    @dg.asset(
        group_name="operations",
        kinds={"python"},
        check_specs=preflight_checks.SPECS,
        description=(
            "Pre-market go/no-go (same code as `trading-pipeline preflight`): one line per item, the reason for "
            "each NO."
        ),
    )
    def preflight(
        context: dg.AssetExecutionContext, database: TradingDatabase, broker: BrokerResource, alerts: AlertsResource
    ) -> dg.MaterializeResult:
        # Splits whose ex-date is today: re-based and re-protected now, before the open fires stale legs —
        # first, so that nothing the go/no-go report trips over can skip it.
        client = guarded_broker(broker, database)
        clock = read_clock(client).clock
        actions = prepare_session(
            database.db, client, today=trading_date(clock), now=clock.timestamp, run_id=context.run.run_id
        )
        if actions.failures:
            context.log.error(f"preflight: corporate actions: {actions.failures}")
        report = run_preflight(
            now=datetime.now(UTC),
            settings=Settings.from_env(),
            instance=context.instance,
            db=database.db,
            broker_factory=broker.client,
            automation=automation,
            alert_channels=alerts.channels(),
        )
        dispatcher = alerts.dispatcher(database.db, context.log)
        # An item another alert already fires for (the watchdog's dead daemon, a failing sensor) is that
        # incident, not a new one: the NO-GO names it as already alerted and alerts only for the rest.
        firing = {a.key for a in alerts_repo.firing_alerts(database.db)}
        fresh = [i for i in report.failures if not (i.alert_key and i.alert_key in firing)]
        known = [i.name for i in report.failures if i not in fresh]
        if report.go:
            dispatcher.resolve(PREFLIGHT_ALERT_KEY, "pre-flight GO")
        elif fresh:
            reasons = "; ".join(i.alert_text() for i in fresh)
            if known:
                reasons += f" (already alerted: {', '.join(known)})"
            dispatcher.fire(
                PREFLIGHT_ALERT_KEY,
                f"pre-flight NO-GO: {len(report.failures)} item(s)",
                reasons,
                severity="critical",
                source="preflight",
            )
        rows = [{"item": i.name, "verdict": "GO" if i.ok else "NO-GO", "detail": i.detail} for i in report.items]
        return dg.MaterializeResult(
            metadata={
                "verdict": "GO" if report.go else "NO-GO",
                "failed_items": len(report.failures),
                "items": md(markdown_table(rows, limit=100)),
                "corporate_actions": json_value(actions.actions),
                "split_rebased": len(actions.rebased),
                "split_rebases": md(reasons_table(actions.rebased)),
                "corporate_action_failures": md(reasons_table(actions.failures)),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="go",
                    passed=report.go,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description="GO" if report.go else f"NO-GO: {len(report.failures)} item(s)",
                    metadata={
                        "failed": md(markdown_table([r for r in rows if r["verdict"] != "GO"], limit=100)),
                        # the NO-GO alert above is this finding: the check alert sensor shares its key
                        ALERT_KEY_METADATA: PREFLIGHT_ALERT_KEY,
                    },
                )
            ],
        )

    return preflight
