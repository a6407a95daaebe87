"""Finish what a crashed or overlapping run left `closing`, by client_order_id at the broker.

A claim whose order the broker does not know (or that ended unfilled) is released for a retry once it is older
than the grace (a younger one may belong to a run between its claim and its submit). A close order still
working in part after the grace is cancelled, and what it filled is split off as closed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trading_pipeline.broker.base import Broker, BrokerError
from trading_pipeline.steps.close_orders import record_close_order
from trading_pipeline.steps.holding_orders import free_quantity
from trading_pipeline.steps.orders import is_dead, order_fields
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

# A `closing` row younger than this may belong to a run that is between its claim and its submit;
# only older rows whose order the broker does not know are released for a retry.
LEFTOVER_GRACE = timedelta(seconds=75)  # > one submit's timeouts and retries, < the 2-minute schedule


def resolve_leftover_closes(
    db: Database, broker: Broker, result: SweepResult, *, now: datetime | None, grace: timedelta
) -> None:
    """Finish what a crashed or overlapping run left `closing`, by client_order_id at the broker."""
    leftovers = trades_repo.closing_trades(db)
    result.leftovers_found = len(leftovers)
    current = now or datetime.now(UTC)
    for trade in leftovers:
        cid = trade.close_client_order_id
        if cid is None:  # cannot happen through claim_for_close; flag it rather than guess
            result.failures[trade.symbol] = "closing row without client_order_id"
            continue
        try:
            order = broker.order_by_client_order_id(cid)
        except BrokerError as exc:
            result.failures[trade.symbol] = f"leftover close lookup failed: {exc}"
            continue
        young = trade.closing_started_at is not None and current - trade.closing_started_at < grace
        if order is None or is_dead(order):
            if young:
                continue  # maybe another run is about to submit it; look again next run
            if order is not None:
                orders_repo.upsert_order(db, order_fields(order, trade.id))
            if claims_repo.release_claim(db, trade.id, client_order_id=cid):
                result.leftovers_released += 1
            continue
        if order.status == "partially_filled" and not young:
            # Part sold, the rest still working after the grace: cancel the rest, then split off what filled.
            freed = free_quantity(broker, [order])
            settled = [*freed.cancelled, *freed.filled]
            if not settled:
                result.failures[trade.symbol] = f"partly filled close {cid} could not be cancelled yet: next run"
                continue
            order = settled[0]
        before = result.closed
        record_close_order(db, trade, order, result=result, reason=None)
        result.leftovers_closed += result.closed - before
