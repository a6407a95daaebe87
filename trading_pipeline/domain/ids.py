"""Deterministic client_order_id values, created before the order is sent.

The id exists before the POST, so a retry, a timeout or a crash between "sent" and "recorded" is resolved
by looking the id up at the broker instead of sending a second order. Alpaca limits it to 48 characters.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

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


# Names the positions the pipeline did not open, so their closes get ids of the same shape as every other.
OUTSIDE_POSITIONS = uuid.UUID("5b0c2f7e-4d1a-4c39-9e55-0f1a7d3c2b64")


def outside_close_client_order_id(
    symbol: str, side: str, qty: Decimal, avg_entry_price: Decimal, attempt: int = 0
) -> str:
    """The close of a position no trade of ours names (bought outside the pipeline): derived from the position
    as the broker shows it, so a second flatten of the same position finds its order instead of sending another,
    and a position that changed (re-bought, partly sold) gets a new id."""
    key = f"{symbol}|{side}|{format(qty.normalize(), 'f')}|{format(avg_entry_price.normalize(), 'f')}"
    return client_order_id(uuid.uuid5(OUTSIDE_POSITIONS, key), OrderAction.CLOSE, attempt)
