"""Value types shared by the domain, the store, the broker adapter and the simulator."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


class PositionSide(enum.StrEnum):
    LONG = "long"
    SHORT = "short"


class OrderSide(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class TradeStatus(enum.StrEnum):
    """A position's lifetime: pending_open → open → closing → closed, or pending_open → cancelled.

    The row exists before the entry order is sent (pending_open) so a crash after the POST leaves a
    row to reconcile by client_order_id, never an untracked position at the broker.
    """

    PENDING_OPEN = "pending_open"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class ExitReason(enum.StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    MAX_AGE = "max_age"
    BROKER_STOP = "broker_stop"
    MANUAL = "manual"


class OrderAction(enum.StrEnum):
    """What an order does to a trade; part of its deterministic client_order_id."""

    OPEN = "open"
    CLOSE = "close"
    STOP = "stop"
    TAKE_PROFIT = "tp"


def closing_side(side: PositionSide) -> OrderSide:
    """The order side that closes a position: sell a long, buy back a short."""
    return OrderSide.SELL if side is PositionSide.LONG else OrderSide.BUY


def signed_qty(qty: Decimal, side: PositionSide) -> Decimal:
    """Quantity with the position's sign (shorts negative): how holdings are compared and summed."""
    return qty if side is PositionSide.LONG else -qty


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book for one symbol. Prices are Decimal; the timestamp is timezone-aware."""

    symbol: str
    bid: Decimal
    ask: Decimal
    timestamp: datetime

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2
