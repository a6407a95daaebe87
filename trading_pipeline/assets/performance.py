"""`performance`: one row per NYSE trading day — P&L, win rate, activity, return vs SPY — with a chart.

Partitioned by trading days only (weekends and holidays are not partitions). Backfills run as one run per
range (`BackfillPolicy.single_run()`): the days share one daily-bars request, and
`dagster asset materialize --partition-range A...B` works from the command line without a daemon.
"""

import warnings
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import dagster as dg

from trading_pipeline.assets.context import guarded_broker
from trading_pipeline.assets.trading_days import previous_trading_day, trading_day_partitions
from trading_pipeline.checks import performance as performance_checks
from trading_pipeline.checks.metadata import json_value, md
from trading_pipeline.domain.performance import DayPerformance
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.settings import Settings
from trading_pipeline.steps.performance import PerformanceRun, record_daily_performance
from trading_pipeline.steps.performance_chart import chart_markdown, render_equity_chart, write_chart
from trading_pipeline.steps.performance_table import markdown_table
from trading_pipeline.store import performance_repository as perf_repo

CHART_DAYS = 120


class PerformanceConfig(dg.Config):
    initial_capital: str = "100000"  # text, parsed as Decimal: money never passes through a float
    chart_days: int = CHART_DAYS  # trading days the chart shows, ending at the last day computed
    chart_dir: str = ""  # where the PNG is written; empty: <TRADING_PIPELINE_DATA_DIR>/charts

    def capital(self) -> Decimal:
        try:
            value = Decimal(self.initial_capital)
        except InvalidOperation:
            raise ValueError(f"initial_capital must be a number, got {self.initial_capital!r}") from None
        if not value.is_finite() or value <= 0:
            raise ValueError(f"initial_capital must be above 0, got {self.initial_capital!r}")
        return value

    def charts_folder(self) -> Path:
        return Path(self.chart_dir) if self.chart_dir else Settings.from_env().data_dir / "charts"


with warnings.catch_warnings():
    # `backfill_policy` is marked beta in dagster 1.13; without this the warning prints on every code load.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)

    @dg.asset(
        partitions_def=trading_day_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["closes"],
        group_name="reporting",
        kinds={"python", "sql"},
        check_specs=performance_checks.SPECS,
        description=(
            "Daily performance per NYSE trading day: realized P&L (trades closed that day), unrealized P&L (open "
            "positions at the close, marked at the day's close from daily bars), equity and return vs SPY, win "
            "rate, trades opened/closed, closes by reason, BUY:SELL. Stored in `daily_performance`; re-running a "
            "day replaces its row. Metadata: the table and an equity-vs-SPY chart."
        ),
    )
    def performance(
        context: dg.AssetExecutionContext, config: PerformanceConfig, database: TradingDatabase, broker: BrokerResource
    ) -> dg.MaterializeResult:
        db = database.db
        days = [date.fromisoformat(key) for key in context.partition_keys]
        run = record_daily_performance(
            db,
            guarded_broker(broker, database),
            days,
            previous_session=previous_trading_day,
            initial_capital=config.capital(),
        )
        last = run.days[-1]
        context.log.info(
            f"performance {days[0]}…{days[-1]}: {len(run.days)} trading days written, "
            f"equity {last.equity}, return {last.portfolio_return}, SPY {last.spy_return}"
        )
        history = perf_repo.recent_daily_performance(db, last=last.trading_date, limit=config.chart_days)
        png = render_equity_chart(history)
        chart_file = write_chart(png, config.charts_folder() / f"performance_{last.trading_date.isoformat()}.png")
        return dg.MaterializeResult(
            metadata={
                **day_metadata(last),
                "trading_days": len(run.days),
                "first_day": days[0].isoformat(),
                "last_day": days[-1].isoformat(),
                "performance": md(markdown_table([day.row() for day in run.days])),
                "equity_vs_spy": md(chart_markdown(png)),
                "chart_file": dg.MetadataValue.path(str(chart_file)),
                "chart_days": len(history),
                "symbols_priced": run.symbols_priced,
                "flagged": json_value(flagged(run)),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="every_position_marked",
                    passed=not (run.unmarked or run.unpriced_closes),
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "unmarked_positions": json_value(run.unmarked),
                        "closes_without_exit_price": json_value(run.unpriced_closes),
                        "marked_at_an_earlier_close": json_value(run.stale_marks),
                    },
                ),
                dg.AssetCheckResult(
                    check_name="benchmark_close_known",
                    passed=not run.missing_benchmark,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"days_without_spy_close": json_value(run.missing_benchmark)},
                ),
            ],
        )


def day_metadata(day: DayPerformance) -> dict[str, object]:
    """The last day's numbers: floats so the UI can plot them across partitions, exact text beside them."""

    def number(value: Decimal | None) -> dg.MetadataValue:
        return dg.MetadataValue.float(float(value)) if value is not None else dg.MetadataValue.null()

    return {
        "realized_pnl": number(day.realized_pnl),
        "unrealized_pnl": number(day.unrealized_pnl),
        "equity": number(day.equity),
        "day_pnl": number(day.day_pnl),
        "portfolio_return": number(day.portfolio_return),
        "spy_return": number(day.spy_return),
        "excess_return": number(day.row().excess_return),
        "win_rate": number(day.win_rate),
        "trades_opened": day.trades_opened,
        "trades_closed": day.trades_closed,
        "open_positions": day.open_positions,
        "buys": day.buys,
        "sells": day.sells,
        "closes_by_reason": json_value(dict(day.closes_by_reason)),
        "day": json_value(day.row()),
    }


def flagged(run: PerformanceRun) -> dict[str, object]:
    return {
        "unmarked_positions": run.unmarked,
        "closes_without_exit_price": run.unpriced_closes,
        "marked_at_an_earlier_close": run.stale_marks,
        "days_without_spy_close": run.missing_benchmark,
    }
