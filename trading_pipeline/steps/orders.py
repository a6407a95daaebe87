"""Converting broker orders into store rows (one place, used by every step that sends orders)."""

from __future__ import annotations

import uuid

from trading_pipeline.broker.base import BrokerOrder
from trading_pipeline.domain.jsonsafe import to_jsonable
from trading_pipeline.store.orders_repository import OrderFields


def order_fields(order: BrokerOrder, trade_id: uuid.UUID | None) -> OrderFields:
    return OrderFields(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        order_type=order.type.value,
        status=order.status,
        trade_id=trade_id,
        broker_order_id=order.id,
        filled_qty=order.filled_qty,
        filled_avg_price=order.filled_avg_price,
        submitted_at=order.submitted_at,
        filled_at=order.filled_at,
        raw=to_jsonable(order.raw) or to_jsonable(order),
    )


TERMINAL_UNFILLED = frozenset({"canceled", "cancelled", "expired", "rejected", "suspended", "replaced"})


def is_dead(order: BrokerOrder) -> bool:
    """The order ended without filling: its claim may be released and retried."""
    return order.status in TERMINAL_UNFILLED and order.filled_qty == 0
