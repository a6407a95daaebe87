"""`closes`: the stop-loss sweep — the commit-early close protocol — and the checks on its outcome."""


from datetime import timedelta

import dagster as dg

from trading_pipeline.assets.context import guarded_broker
from trading_pipeline.assets.metadata import db_stats_metadata, json_value, markdown_table, md, reasons_table
from trading_pipeline.domain.exits import InvalidQuote, decide_exit
from trading_pipeline.domain.types import ExitReason
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.store import repository as repo


class ClosesConfig(dg.Config):
    max_quote_age_seconds: int = 300  # during a session, an older quote is stale: flagged, not acted on


CHECKS = [
    dg.AssetCheckSpec(
        "every_position_judged",
        asset="closes",
        blocking=True,
        description=(
            "Every open position was judged against a usable quote in this sweep. A missing, stale, NaN, zero or "
            "crossed quote means its stop could not be checked: the position is unprotected until fixed."
        ),
    ),
    dg.AssetCheckSpec(
        "no_position_beyond_stop",
        asset="closes",
        blocking=True,
        description=(
            "After the sweep, no open position's latest quote is beyond its stop-loss. If one is, a close failed "
            "or was never attempted, and money is being lost."
        ),
    ),
    dg.AssetCheckSpec(
        "no_connection_held_during_broker_calls",
        asset="closes",
        description="No DB connection was checked out while a broker call was in flight (the seed's pool outage).",
    ),
]


@dg.asset(
    deps=["positions"],
    group_name="trading",
    kinds={"python", "sql"},
    check_specs=CHECKS,
    description=(
        "The stop-loss sweep: read open trades and commit; fetch quotes once per unique symbol; decide exits; "
        "for each exit claim open→closing in its own transaction, submit the order with its deterministic "
        "client_order_id with no DB connection checked out, then record the fill. Leftover `closing` rows from "
        "a crashed run are resolved first, by client_order_id at the broker."
    ),
)
def closes(
    context: dg.AssetExecutionContext, config: ClosesConfig, database: TradingDatabase, broker: BrokerResource
) -> dg.MaterializeResult:
    db = database.db
    client = guarded_broker(broker, database)
    clock = client.clock()
    result = run_stop_loss_sweep(
        db,
        client,
        run_id=context.run.run_id,
        now=clock.timestamp,
        max_quote_age=timedelta(seconds=config.max_quote_age_seconds) if clock.is_open else None,
        prefetched=repo.quotes_for_run(db, context.run.run_id),
    )
    flagged = result.flagged_positions
    if flagged:
        context.log.error(f"closes: {len(flagged)} positions could not be judged: {flagged}")
    if result.failures:
        context.log.error(f"closes: failures: {result.failures}")
    beyond = positions_beyond_stop(db, context.run.run_id)
    stats = db.monitor.stats()
    return dg.MaterializeResult(
        metadata={
            "positions_checked": result.positions_checked,
            "unique_symbols": result.unique_symbols,
            "quote_requests": result.quote_requests,
            "exits_decided": result.exits_decided,
            "orders_submitted": result.orders_submitted,
            "closed": result.closed,
            "closed_stop_loss": result.closes_by_reason.get(ExitReason.STOP_LOSS.value, 0),
            "closed_take_profit": result.closes_by_reason.get(ExitReason.TAKE_PROFIT.value, 0),
            "closes_by_reason": json_value(dict(result.closes_by_reason)),
            "claims_lost_to_other_runs": result.claim_lost,
            "pending_fill": result.pending_fill,
            "leftovers_found": result.leftovers_found,
            "leftovers_closed": result.leftovers_closed,
            "leftovers_released": result.leftovers_released,
            "flagged_positions": md(reasons_table(flagged)),
            "failures": md(reasons_table(result.failures)),
            "closed_positions": md(markdown_table(result.closed_trades)),
            "market_open": clock.is_open,
            **db_stats_metadata(stats),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_position_judged",
                passed=not flagged,
                severity=dg.AssetCheckSeverity.ERROR,
                description="all open positions judged" if not flagged else f"{len(flagged)} positions not judged",
                metadata={"flagged_count": len(flagged), "flagged": md(reasons_table(flagged))},
            ),
            dg.AssetCheckResult(
                check_name="no_position_beyond_stop",
                passed=not beyond,
                severity=dg.AssetCheckSeverity.ERROR,
                description="no open position beyond its stop" if not beyond else f"{len(beyond)} beyond stop",
                metadata={"beyond_stop_count": len(beyond), "positions": md(reasons_table(beyond))},
            ),
            dg.AssetCheckResult(
                check_name="no_connection_held_during_broker_calls",
                passed=stats.checkouts_during_broker_calls == 0,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "checkouts_during_broker_calls": stats.checkouts_during_broker_calls,
                    "longest_transaction_ms": float(stats.longest_transaction_ms),
                },
            ),
        ],
    )


def positions_beyond_stop(db, run_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Open trades whose quote from this run says they should have been stopped out."""
    latest = repo.quotes_for_run(db, run_id)
    beyond: dict[str, str] = {}
    for trade in repo.open_trades(db):
        quote = latest.get(trade.symbol)
        if quote is None or trade.stop_loss is None:
            continue
        try:
            decision = decide_exit(trade.position_view(), quote)
        except InvalidQuote:
            continue  # already flagged by every_position_judged
        if decision is not None and decision.reason is ExitReason.STOP_LOSS:
            beyond[f"{trade.symbol} {str(trade.id)[:8]}"] = f"quote {quote.bid}/{quote.ask}, stop {trade.stop_loss}"
    return beyond
