"""The fills of this run's close orders, looked up in one listing instead of one look-up per order.

Alpaca answers a submit before the fill. The closes are sent without waiting (`confirm_fill=False`); then one
`GET /v2/orders?status=all&symbols=…&after=…` (all pages) reads every order of the run, and each close is
recorded from what it shows. Orders still working are listed again after a short pause, up to
`FILL_WAIT_SECONDS`; what is still working then is recorded as accepted (the row stays `closing`, and the next
run's leftover resolution records the fill by client_order_id). When the listing fails, each order is looked
up by its client_order_id (another endpoint); one that cannot be is recorded as the broker answered its submit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from trading_pipeline.broker.base import Broker, BrokerError, BrokerOrder
from trading_pipeline.domain.types import ExitReason
from trading_pipeline.steps.close_orders import record_close_order
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

FILL_WAIT_SECONDS = 1.0
# `after` is exclusive: look from a little before the first of the run's submissions.
LISTING_LOOKBACK = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class AwaitingFill:
    trade: trades_repo.TradeRecord
    order: BrokerOrder  # as the broker answered the submit
    reason: ExitReason | None


def record_fills(
    db: Database,
    broker: Broker,
    awaiting: list[AwaitingFill],
    *,
    result: SweepResult,
    run_id: str | None,
    since: datetime,
    wait_seconds: float = FILL_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Exception]:
    """Record every close in `awaiting` from one listing of the run's orders (a few, while fills arrive).
    Returns the errors of records that failed (each close is its own transaction: one failing does not stop
    the others); their rows stay `closing` and the next run's leftover resolution records them."""
    latest = {item.order.client_order_id: item.order for item in awaiting}
    pending = {cid for cid, order in latest.items() if not order.is_terminal}
    symbols = {item.trade.symbol for item in awaiting}
    # From the broker's own stamps of these submissions (our clock and the broker's may differ).
    stamps = [item.order.submitted_at for item in awaiting]
    after = min([stamp for stamp in stamps if stamp is not None] or [since]) - LISTING_LOOKBACK
    deadline = time.monotonic() + wait_seconds
    delay = 0.02
    while pending:
        try:
            listed = broker.all_orders(symbols, after=after)
        except BrokerError as exc:
            # The listing is down (issue 14: no one endpoint may block a close): each fill by its own id instead.
            result.book_problems["(fills)"] = f"the run's orders could not be listed ({exc}); looked up one by one"
            _one_by_one(broker, pending, latest)
            break
        result.fill_listings += 1
        for order in listed:
            if order.client_order_id in latest:
                latest[order.client_order_id] = order
        pending = {cid for cid in pending if not latest[cid].is_terminal}
        if not pending or time.monotonic() >= deadline:
            break
        sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.25)
    errors: list[Exception] = []
    for item in awaiting:
        order = latest[item.order.client_order_id]
        try:
            record_close_order(db, item.trade, order, result=result, reason=item.reason, run_id=run_id)
        except Exception as exc:  # the DB went away mid-record: the rest are still recorded
            errors.append(exc)
    return errors


def _one_by_one(broker: Broker, pending: set[str], latest: dict[str, BrokerOrder]) -> None:
    for cid in sorted(pending):
        try:
            found = broker.order_by_client_order_id(cid)
        except BrokerError:
            continue  # recorded as submitted; the next run's leftover resolution looks it up again
        if found is not None:
            latest[cid] = found
