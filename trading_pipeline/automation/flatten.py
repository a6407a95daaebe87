"""`flatten_job`'s one op: close everything now from the UI (Launchpad → config `reason`, optional `symbols`).

An op, not an asset: flattening is a person's command, not data to keep fresh — as an asset it would run on
"Materialize all". The step is `steps/flatten.py`, the same one `trading-pipeline flatten` runs; the run fails
when anything was refused (the run-failure sensor then alerts too), with the table in its metadata.
"""

import dagster as dg
from pydantic import Field

from trading_pipeline.assets.context import guarded_broker
from trading_pipeline.checks.metadata import markdown_table, md
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.steps.flatten import FlattenError, FlattenResult, flatten_book


class FlattenConfig(dg.Config):
    # No default: a flatten without a reason does not start (recorded with who and when, and in the alert).
    reason: str = Field(description="Why the book is flattened: recorded with the halt, the audit rows and the alert.")
    symbols: list[str] = Field(
        default_factory=list, description="Flatten only these symbols (default: every position and open order)."
    )
    actor: str | None = Field(default=None, description="Who asked (default: the run's launcher, else `dagster`).")


def flatten_metadata(result: FlattenResult) -> dict[str, object]:
    rows = [
        {"symbol": x.symbol, "held": x.held, "whose": x.whose, "outcome": x.outcome, "detail": x.detail}
        for x in result.lines
    ]
    return {
        "positions": md(markdown_table(rows, limit=500)),
        "refused": len(result.refused),
        "orders_sent": result.orders_sent,
        "orders_cancelled": md("\n".join(f"- {c}" for c in result.cancelled) or "_(none)_"),
        "market_open": bool(result.clock and result.clock.clock.is_open),
        "halted_by": f"{result.actor}: {result.reason}",
    }


@dg.op(
    description=(
        "Close everything now: halt entries, cancel every open order on the symbols (bracket legs and anyone "
        "else's), close every position the broker holds (ours through the stop-loss claim protocol, reason "
        "manual; others with a deterministic id and an audit row), record the fills, alert. Fails if anything "
        "was refused."
    ),
    tags={"kind": "trading"},
)
def flatten(
    context: dg.OpExecutionContext,
    config: FlattenConfig,
    database: TradingDatabase,
    broker: BrokerResource,
    alerts: AlertsResource,
) -> dg.Output[dict]:
    tags = context.run.tags
    actor = config.actor or tags.get("dagster/user") or tags.get("user") or "dagster"
    try:
        result = flatten_book(
            database.db,
            guarded_broker(broker, database),
            reason=config.reason,
            actor=actor,
            symbols=config.symbols or None,
            run_id=context.run.run_id,
            alerts=alerts.dispatcher(database.db, context.log),
        )
    except FlattenError as exc:
        raise dg.Failure(description=str(exc)) from None
    metadata = flatten_metadata(result)
    if not result.ok:
        refused = "; ".join(f"{k}: {v}" for k, v in sorted(result.refused.items()))
        raise dg.Failure(description=f"flatten refused for {len(result.refused)}: {refused}", metadata=metadata)
    context.log.info(f"flatten by {actor}: {len(result.lines)} positions, {result.orders_sent} orders sent")
    return dg.Output({"outcomes": {x.symbol: x.outcome for x in result.lines}}, metadata=metadata)
