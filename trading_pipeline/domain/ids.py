"""Deterministic client_order_id values, created before the order is sent.

The id exists before the POST, so a retry, a timeout or a crash between "sent" and "recorded" is resolved
by looking the id up at the broker instead of sending a second order. Alpaca limits it to 48 characters.
"""

from __future__ import annotations

import re
import uuid

from trading_pipeline.domain.types import OrderAction

MAX_CLIENT_ORDER_ID_LENGTH = 48
PREFIX = "tp"
_PATTERN = re.compile(r"^tp-([0-9a-f]{32})-([a-z]+)-([0-9]+)$")


def client_order_id(trade_id: uuid.UUID, action: OrderAction, attempt: int = 0) -> str:
    """`tp-<trade uuid hex>-<action>-<attempt>`, e.g. tp-1f0c…9a-close-0 (at most 46 characters)."""
    if not isinstance(trade_id, uuid.UUID):
        raise TypeError(f"trade_id must be a uuid.UUID, got {type(trade_id).__name__}")
    if not 0 <= attempt <= 999:
        raise ValueError(f"attempt must be between 0 and 999, got {attempt}")
    value = f"{PREFIX}-{trade_id.hex}-{OrderAction(action).value}-{attempt}"
    assert len(value) <= MAX_CLIENT_ORDER_ID_LENGTH
    return value


def parse_client_order_id(value: str) -> tuple[uuid.UUID, OrderAction, int] | None:
    """Inverse of client_order_id; None for ids this product did not create."""
    match = _PATTERN.match(value)
    if match is None:
        return None
    try:
        action = OrderAction(match.group(2))
    except ValueError:
        return None
    return uuid.UUID(hex=match.group(1)), action, int(match.group(3))
