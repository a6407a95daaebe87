"""`quotes`: latest quotes for open positions ∪ today's candidates, in as few requests as the API allows."""

from datetime import timedelta

import dagster as dg

from trading_pipeline.assets.context import guarded_broker, trading_date
from trading_pipeline.checks import quotes as quotes_checks
from trading_pipeline.checks.metadata import md, reasons_table, symbols_text
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.steps.clock import read_clock
from trading_pipeline.steps.quotes import fetch_quotes


class QuotesConfig(dg.Config):
    include_candidates: bool = True  # the stop-loss job turns this off: it only needs open positions


@dg.asset(
    deps=["universe"],
    group_name="trading",
    check_specs=quotes_checks.SPECS,
    # The stop-loss schedule refreshes quotes every 2 minutes in a session: older than 6 is stale in the UI.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=6), warn_window=timedelta(minutes=3)),
    kinds={"python", "sql"},
    description=(
        "Latest bid/ask for every open position (and, for the trading-day job, today's candidates): unique "
        "symbols, one multi-symbol request per chunk. Missing and unusable quotes (NaN, 0, crossed) are listed, "
        "never replaced by a price."
    ),
)
def quotes(
    context: dg.AssetExecutionContext, config: QuotesConfig, database: TradingDatabase, broker: BrokerResource
) -> dg.MaterializeResult:
    client = guarded_broker(broker, database)
    reading = read_clock(client)
    clock = reading.clock
    result = fetch_quotes(
        database.db,
        client,
        trading_date=trading_date(clock) if config.include_candidates else None,
        run_id=context.run.run_id,
        now=clock.timestamp,
    )
    if result.missing or result.unusable:
        context.log.warning(f"quotes: {len(result.missing)} missing, {len(result.unusable)} unusable")
    return dg.MaterializeResult(
        metadata={
            "symbols_requested": result.symbols_requested,
            "open_position_symbols": result.open_position_symbols,
            "candidate_symbols": result.candidate_symbols,
            "quote_requests": result.requests,
            "quotes_received": len(result.quotes),
            "missing_count": len(result.missing),
            "missing_symbols": symbols_text(result.missing),
            "unusable_quotes": md(reasons_table(result.unusable)),
            "oldest_quote_age_seconds": float(result.oldest_quote_age_seconds or 0.0),
            **reading.metadata(),
        },
        check_results=[
            quotes_checks.every_position_quoted(result.held, result.quotes),
            quotes_checks.quotes_fresh(result.quotes, now=clock.timestamp, in_session=clock.is_open),
            quotes_checks.quotes_sane(result.unusable),
        ],
    )
