"""`health`: the `trading-pipeline status` report, materialized on a schedule so the UI keeps its history."""

from datetime import UTC, datetime

import dagster as dg

from trading_pipeline.checks import health as health_checks
from trading_pipeline.checks.metadata import md
from trading_pipeline.checks.registry import ALL_SPECS
from trading_pipeline.domain.calendar import NEW_YORK
from trading_pipeline.monitoring.alert_channels import channel_items
from trading_pipeline.monitoring.health import Automation
from trading_pipeline.monitoring.status import build_status, render_status
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.settings import Settings


def build_health_asset(automation: Automation) -> dg.AssetsDefinition:
    """The `health` asset, judging the schedules and sensors `definitions.py` wires in (assets never import
    the automation that launches them)."""

    @dg.asset(
        group_name="operations",
        kinds={"python"},
        check_specs=health_checks.SPECS,
        description=(
            "System health first (daemon heartbeats, schedules/sensors, stop-loss runs, failed checks, alert "
            "channels and their last deliveries, alerts), "
            "then outcomes, then P&L — the same report as `trading-pipeline status`, kept with history."
        ),
    )
    def health(
        context: dg.AssetExecutionContext, database: TradingDatabase, alerts: AlertsResource
    ) -> dg.MaterializeResult:
        now = datetime.now(UTC)
        report = build_status(
            now=now,
            day=now.astimezone(NEW_YORK).date(),
            instance=context.instance,
            instance_problem=None,
            db=database.db,
            db_problem=None,
            automation=automation,
            check_specs=ALL_SPECS,
            alert_channels=channel_items(Settings.from_env(), alerts.channels(), database.db),
        )
        if not report.healthy:
            context.log.error(render_status(report).splitlines()[0])
        pnl, outcomes = report.pnl, report.outcomes
        checks = [health_checks.buy_sell_outcome(database.db, context.instance, now)]
        return dg.MaterializeResult(
            check_results=checks,
            metadata={
                "healthy": report.healthy,
                "problems": len(report.problems),
                "report": md(f"```\n{render_status(report)}\n```"),
                "open_positions": outcomes.get("open_positions", 0),
                "realized_pnl_today": float(pnl.get("realized_today", 0)),
                "unrealized_pnl": float(pnl.get("unrealized", 0)),
            },
        )

    return health
