"""`positions`: open trades reconciled with the broker's positions; pending entries resolved by id."""


import dagster as dg

from trading_pipeline.assets.context import guarded_broker
from trading_pipeline.assets.metadata import md, reasons_table
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.steps.reconcile import reconcile_positions


@dg.asset(
    deps=["quotes"],
    group_name="trading",
    kinds={"python", "sql"},
    check_specs=[
        dg.AssetCheckSpec(
            "reconciliation_clean",
            asset="positions",
            description=(
                "Every open trade in the DB is held at the broker with the same quantity, and the broker holds "
                "nothing the DB does not know about. A mismatch means a stop may be protecting the wrong size."
            ),
        )
    ],
    description="Open trades in the DB vs positions at the broker: missing, extra and quantity mismatches.",
)
def positions(
    context: dg.AssetExecutionContext, database: TradingDatabase, broker: BrokerResource
) -> dg.MaterializeResult:
    client = guarded_broker(broker, database)
    result = reconcile_positions(database.db, client, now=client.clock().timestamp)
    mismatches = {**result.missing_at_broker, **result.extra_at_broker, **result.qty_mismatch}
    if mismatches:
        context.log.error(f"positions: {len(mismatches)} reconciliation mismatches: {mismatches}")
    return dg.MaterializeResult(
        metadata={
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
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="reconciliation_clean",
                passed=result.clean,
                severity=dg.AssetCheckSeverity.ERROR,
                description="DB and broker agree" if result.clean else f"{len(mismatches)} mismatches",
                metadata={
                    "missing_at_broker": len(result.missing_at_broker),
                    "extra_at_broker": len(result.extra_at_broker),
                    "qty_mismatch": len(result.qty_mismatch),
                    "details": md(reasons_table(mismatches)),
                },
            )
        ],
    )
