"""`preflight`: the pre-market go/no-go, recorded in the UI with history, alerting on NO-GO."""

from datetime import UTC, datetime

import dagster as dg

from trading_pipeline.checks import preflight as preflight_checks
from trading_pipeline.checks.metadata import markdown_table, md
from trading_pipeline.monitoring.health import Automation
from trading_pipeline.monitoring.preflight import run_preflight
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.settings import Settings


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
        report = run_preflight(
            now=datetime.now(UTC),
            settings=Settings.from_env(),
            instance=context.instance,
            db=database.db,
            broker_factory=broker.client,
            automation=automation,
        )
        dispatcher = alerts.dispatcher(database.db, context.log)
        if report.go:
            dispatcher.resolve("preflight", "pre-flight GO")
        else:
            reasons = "; ".join(f"{i.name}: {i.detail}" for i in report.failures)
            dispatcher.fire("preflight", "pre-flight NO-GO", reasons, severity="critical", source="preflight")
        rows = [{"item": i.name, "verdict": "GO" if i.ok else "NO-GO", "detail": i.detail} for i in report.items]
        return dg.MaterializeResult(
            metadata={
                "verdict": "GO" if report.go else "NO-GO",
                "failed_items": len(report.failures),
                "items": md(markdown_table(rows, limit=100)),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="go",
                    passed=report.go,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description="GO" if report.go else f"NO-GO: {len(report.failures)} item(s)",
                    metadata={"failed": md(markdown_table([r for r in rows if r["verdict"] != "GO"], limit=100))},
                )
            ],
        )

    return preflight
