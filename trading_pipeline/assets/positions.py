"""`positions`: open trades reconciled with the broker's positions; pending entries resolved by id."""

from datetime import timedelta

import dagster as dg

from trading_pipeline.assets.context import guarded_broker, trading_date
from trading_pipeline.checks import positions as positions_checks
from trading_pipeline.checks.metadata import markdown_table, md, reasons_table
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.monitoring.runs import recent_runs
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.steps.protection import protect_positions
from trading_pipeline.steps.reconcile import reconcile_positions
from trading_pipeline.store import trades_repository as trades_repo


@dg.asset(
    deps=["quotes"],
    group_name="trading",
    kinds={"python", "sql"},
    check_specs=positions_checks.SPECS,
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=6), warn_window=timedelta(minutes=3)),
    description="Open trades in the DB vs positions at the broker: missing, extra and quantity mismatches.",
)
def positions(
    context: dg.AssetExecutionContext, database: TradingDatabase, broker: BrokerResource
) -> dg.MaterializeResult:
    db = database.db
    client = guarded_broker(broker, database)
    clock = client.clock()
    # Second line of defence first: record what the broker's own stops closed, re-arm missing legs, cancel
    # orphans — so the reconciliation below compares the DB with the broker as it really is now.
    protection = protect_positions(db, client, now=clock.timestamp)
    result = reconcile_positions(db, client, now=clock.timestamp, broker_positions=protection.broker_positions)
    mismatches = {**result.missing_at_broker, **result.extra_at_broker, **result.qty_mismatch}
    if mismatches:
        context.log.error(f"positions: {len(mismatches)} reconciliation mismatches: {mismatches}")
    open_trades = trades_repo.open_trades(db)
    run_starts = [r.create_timestamp for r in recent_runs(context.instance, STOP_LOSS_JOB, limit=3)]
    return dg.MaterializeResult(
        metadata={
            "open_positions": len(open_trades),
            "open_symbols_db": result.db_symbols,
            "open_symbols_broker": result.broker_symbols,
            "matched": result.matched,
            "missing_at_broker": len(result.missing_at_broker),
            "extra_at_broker": len(result.extra_at_broker),
            "qty_mismatch": len(result.qty_mismatch),
            "pending_entries_filled": result.pending_filled,
            "pending_entries_cancelled": result.pending_cancelled,
            "pending_entries_waiting": result.pending_waiting,
            "mismatches": md(reasons_table(mismatches)),
            "failures": md(reasons_table(result.failures)),
            "protected_positions": protection.protected_positions,
            "protection_verified": protection.verified,
            "protection_recreated": len(protection.recreated),
            "closed_by_broker_orders": len(protection.broker_closes),
            "broker_closes": md(markdown_table(protection.broker_closes)),
            "orphan_orders_cancelled": len(protection.orphans_cancelled),
        },
        check_results=[
            positions_checks.reconciliation_clean(mismatches, result.matched),
            positions_checks.protective_orders_live(
                protection.protected_positions, {**protection.unprotected, **protection.failures}, protection.recreated
            ),
            positions_checks.oldest_open_position_age(open_trades, today=trading_date(clock)),
            positions_checks.no_stale_closing_rows(trades_repo.closing_trades(db), run_starts=run_starts),
        ],
    )
