"""Free the quantity a close needs: cancel the open orders that hold it, and wait until the broker confirms.

Alpaca refuses to sell shares held for open orders (403 "insufficient qty available"): a bracket's legs, an
OCO pair, or an order placed outside the pipeline (the web app, another script). Before a close those are
cancelled — ours silently, anyone else's with an alert naming it — and the close goes out only once every
cancel is confirmed (a cancel is asynchronous: `pending_cancel` first). An order that filled before its cancel
took effect is reported, so the caller records that close instead of sending a second one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from trading_pipeline.broker.base import Broker, BrokerError, BrokerOrder

CONFIRM_POLLS = 8  # about 2 s in all with the backoff below: a paper cancel is confirmed in milliseconds
FIRST_POLL_DELAY = 0.02
MAX_POLL_DELAY = 0.5


@dataclass
class FreedQuantity:
    cancelled: list[BrokerOrder] = field(default_factory=list)  # confirmed cancelled (or otherwise ended unfilled)
    filled: list[BrokerOrder] = field(default_factory=list)  # filled, wholly or partly, before the cancel took
    unconfirmed: list[BrokerOrder] = field(default_factory=list)  # cancel asked, not confirmed yet
    failures: list[str] = field(default_factory=list)

    @property
    def free(self) -> bool:
        """Every holding order ended without filling: the close may go out now."""
        return not (self.filled or self.unconfirmed or self.failures)


def free_quantity(
    broker: Broker,
    orders: Iterable[BrokerOrder],
    *,
    sleep: Callable[[float], None] = time.sleep,
    polls: int = CONFIRM_POLLS,
) -> FreedQuantity:
    result = FreedQuantity()
    waiting: list[BrokerOrder] = []
    for order in orders:
        try:
            broker.cancel_order(order.id)
        except BrokerError as exc:
            current = _lookup(broker, order, result)
            if current is not None and current.filled_qty > 0:
                result.filled.append(current)
            elif current is not None and current.is_terminal:
                result.cancelled.append(current)
            elif current is not None and current.status == "pending_cancel":
                waiting.append(current)  # a cancel is already on its way
            else:
                result.failures.append(f"cancel of {describe_order(order)} failed: {exc}")
            continue
        waiting.append(order)
    delay = FIRST_POLL_DELAY
    for _ in range(polls):
        if not waiting:
            break
        still: list[BrokerOrder] = []
        for order in waiting:
            current = _lookup(broker, order, result)
            if current is None or not current.is_terminal:
                still.append(current or order)
            elif current.filled_qty > 0:
                result.filled.append(current)
            else:
                result.cancelled.append(current)
        waiting = still
        if waiting:
            sleep(delay)
            delay = min(delay * 2, MAX_POLL_DELAY)
    result.unconfirmed = waiting
    return result


def _lookup(broker: Broker, order: BrokerOrder, result: FreedQuantity) -> BrokerOrder | None:
    try:
        return broker.order_by_id(order.id)
    except BrokerError as exc:
        result.failures.append(f"looking up {describe_order(order)} failed: {exc}")
        return None


def describe_order(order: BrokerOrder) -> str:
    price = order.stop_price or order.limit_price
    at = f" @ {price}" if price is not None else ""
    return f"{order.side.value} {order.remaining_qty} {order.symbol} {order.type.value}{at} ({order.client_order_id})"
