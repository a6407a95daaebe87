"""`entries`: the strategy's picks opened as BUYs with stop-loss and take-profit, within risk limits."""

import dagster as dg

from trading_pipeline.assets.context import alert_daily_loss, day_start, guarded_broker, trading_date
from trading_pipeline.checks.metadata import db_stats_metadata, json_value, markdown_table, md, reasons_table
from trading_pipeline.domain.strategy import StrategyFailed, StrategyProblem
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.resources.strategy import StrategyConfig
from trading_pipeline.steps.clock import read_clock
from trading_pipeline.steps.entries import open_entries


@dg.asset(
    deps=["universe", "quotes"],
    group_name="trading",
    kinds={"python", "sql"},
    description=(
        "Runs the entry strategy (built-in `momentum`, or a plug-in: TRADING_PIPELINE_STRATEGY) on the day's "
        "universe sample and opens market BUYs sized within the risk limits (max positions, notional per "
        "position, in total and per day, buying power); nothing while halted. A strategy that raises or returns "
        "an invalid intent fails this step with nothing traded — the stop-loss job never loads it. One "
        "decision_runs row per run holds the JSON-safe execution metadata, including the broker's order objects."
    ),
)
def entries(
    context: dg.AssetExecutionContext,
    database: TradingDatabase,
    broker: BrokerResource,
    strategy: StrategyConfig,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    try:
        loaded = strategy.load()
    except StrategyProblem as exc:
        context.log.error(str(exc))
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    client = guarded_broker(broker, database)
    reading = read_clock(client)
    clock = reading.clock
    day = trading_date(clock)
    try:
        result = open_entries(
            database.db,
            client,
            strategy=loaded.strategy,
            limits=strategy.limits(),
            trading_date=day,
            run_id=context.run.run_id,
            now=clock.timestamp,
            protective_orders=strategy.protective_orders,
            day_start=day_start(day, clock.timestamp),
            market=reading,
            strategy_meta=loaded.describe(),
        )
    except StrategyFailed as exc:
        # One line for the run's failure and its alert; the strategy's traceback goes to the log (and the
        # decision_runs row), so the fix is findable without chaining it into the alert text.
        context.log.error(f"{exc}\n{exc.details or ''}")
        raise dg.Failure(
            description=str(exc), metadata={"strategy": json_value(loaded.describe())}, allow_retries=False
        ) from None
    if result.halted_by_daily_loss:
        alert_daily_loss(alerts, database, context, result.skipped_reason or "daily loss limit breached")
    if result.skipped_reason:
        context.log.warning(f"entries: no orders — {result.skipped_reason}")
    return dg.MaterializeResult(
        metadata={
            "trading_date": result.trading_date.isoformat(),
            "skipped_reason": result.skipped_reason or "",
            **reading.metadata(),
            "strategy": loaded.strategy.name,
            "strategy_selection": json_value(loaded.describe()),
            "candidates": result.candidates,
            "proposed": result.proposed,
            "sized": result.sized,
            "orders_submitted": result.orders_submitted,
            "opened": result.opened,
            "pending": result.pending,
            "failures": md(reasons_table(result.failures)),
            "dropped_by_risk_limits": md(reasons_table(result.dropped)),
            "capped_by_risk_limits": md(reasons_table(result.capped)),
            "rejected_by_strategy": len(result.strategy_rejected),
            "unusable_quotes": md(reasons_table(result.unusable_quotes)),
            "opened_positions": md(markdown_table(result.opened_trades)),
            "buying_power": float(result.buying_power or 0),
            "decision_run_id": result.decision_run_id or "",
            **db_stats_metadata(database.db.monitor.stats()),
        }
    )
