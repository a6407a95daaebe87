"""The Broker protocol and the product's own typed values at the broker boundary.

Everything that crosses this boundary is converted into these types: Decimal money, timezone-aware
times, enums for sides. Adapters never leak SDK models into the pipeline.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from trading_pipeline.domain.corporate_actions import CorporateAction
from trading_pipeline.domain.types import OrderSide, PositionSide, Quote


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    # Not submitted by the product, but a manual order seen at the broker must still convert.
    TRAILING_STOP = "trailing_stop"


class OrderClass(enum.StrEnum):
    SIMPLE = "simple"
    BRACKET = "bracket"
    OCO = "oco"
    OTO = "oto"
    MLEG = "mleg"  # options multi-leg; only ever read, never submitted


class TimeInForce(enum.StrEnum):
    DAY = "day"
    GTC = "gtc"


@dataclass(frozen=True, slots=True)
class Asset:
    symbol: str
    name: str
    exchange: str
    tradable: bool
    status: str = "active"


@dataclass(frozen=True, slots=True)
class QuoteBatch:
    """Result of one latest-quotes call over many symbols.

    `missing` are symbols the broker did not return (Alpaca omits unknown symbols); `rejected` are
    symbols refused before sending (malformed), with the reason. Neither is ever a price of 0.
    `requests` is how many HTTP requests were made (the batching budget).
    """

    quotes: Mapping[str, Quote]
    missing: frozenset[str] = frozenset()
    rejected: Mapping[str, str] = field(default_factory=dict)
    requests: int = 0


@dataclass(frozen=True, slots=True)
class MarketClock:
    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime


@dataclass(frozen=True, slots=True)
class TradingSession:
    day: date
    open: datetime
    close: datetime


@dataclass(frozen=True, slots=True)
class Account:
    status: str
    buying_power: Decimal
    cash: Decimal
    equity: Decimal
    trading_blocked: bool
    account_blocked: bool
    currency: str = "USD"

    @property
    def can_trade(self) -> bool:
        return self.status.upper() == "ACTIVE" and not self.trading_blocked and not self.account_blocked


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    symbol: str
    side: PositionSide
    qty: Decimal
    avg_entry_price: Decimal
    current_price: Decimal | None = None
    # Shares not held for open orders (Alpaca's qty_available): what a new closing order may sell right now.
    qty_available: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order to send. `client_order_id` is mandatory: it is how an ambiguous submit is resolved."""

    symbol: str
    side: OrderSide
    qty: Decimal
    client_order_id: str
    type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    order_class: OrderClass = OrderClass.SIMPLE
    take_profit_limit_price: Decimal | None = None
    stop_loss_stop_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    id: str
    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    type: OrderType
    status: str
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    submitted_at: datetime | None
    filled_at: datetime | None
    order_class: OrderClass = OrderClass.SIMPLE
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    legs: tuple[BrokerOrder, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_filled(self) -> bool:
        return self.status == "filled"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ORDER_STATUSES

    @property
    def is_terminal(self) -> bool:
        """No further fills can happen (filled, canceled, expired, rejected, replaced…)."""
        return self.status in TERMINAL_ORDER_STATUSES

    @property
    def remaining_qty(self) -> Decimal:
        return max(Decimal(0), self.qty - self.filled_qty)

    def with_legs(self) -> list[BrokerOrder]:
        """This order and its legs (nested as Alpaca rolls them up), as one list."""
        out = [self]
        for leg in self.legs:
            out.extend(leg.with_legs())
        return out


OPEN_ORDER_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "accepted_for_bidding",
        "partially_filled",
        "held",
        "pending_replace",
        "pending_cancel",
        "calculated",
        "stopped",
        "suspended",
        "done_for_day",
    }
)


TERMINAL_ORDER_STATUSES = frozenset({"filled", "canceled", "cancelled", "expired", "rejected", "replaced"})
# A protective leg counts as live protection in these states: Alpaca keeps a bracket's stop leg `held`
# while its take-profit sibling is working, and a leg is `new`/`accepted`/`pending_new` before it rests.
LIVE_LEG_STATUSES = frozenset({"new", "accepted", "pending_new", "held", "accepted_for_bidding", "pending_replace"})


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


class BrokerError(Exception):
    """A broker call failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BrokerUnavailable(BrokerError):
    """Retries exhausted (429/5xx/timeouts): the broker could not be reached reliably."""


class RateBudgetExhausted(BrokerError):
    """Not sent: the process's rate budget for this kind of request ran out (see `broker/rate_limit.py`).
    Nothing reached the broker, so an entry refused this way can be dropped without reconciling it."""


class OrderRejected(BrokerError):
    """The broker refused the order (422/403); the message is the broker's. `code`: Alpaca's error code
    (e.g. 40310000 forbidden, 40310100 pattern-day-trading protection); `details`: the other fields of its
    body, e.g. an insufficient-quantity refusal's `available`, `existing_qty` and `held_for_orders`."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.code = code
        self.details = dict(details or {})


class NotFound(BrokerError):
    """The broker has no such object (404)."""


class ConfigurationError(Exception):
    """Settings that must not be used (missing keys, live without opt-in); the message says the fix."""


@runtime_checkable
class Broker(Protocol):
    """What the pipeline needs from a broker. Every method is one or a few HTTP calls with a timeout."""

    def active_assets(self) -> list[Asset]: ...

    def latest_quotes(self, symbols: Iterable[str]) -> QuoteBatch: ...

    def clock(self) -> MarketClock: ...

    def calendar(self, start: date, end: date) -> list[TradingSession]: ...

    def account(self) -> Account: ...

    def positions(self) -> list[BrokerPosition]: ...

    def position(self, symbol: str) -> BrokerPosition | None: ...

    def order_by_id(self, order_id: str) -> BrokerOrder | None: ...

    def submit_order(self, request: OrderRequest, *, confirm_fill: bool = True) -> BrokerOrder:
        """`confirm_fill=False`: answer with the order as accepted, without looking its fill up (the caller
        looks many fills up in one listing)."""
        ...

    def order_by_client_order_id(self, client_order_id: str) -> BrokerOrder | None: ...

    def open_orders(self, symbols: Iterable[str] | None = None) -> list[BrokerOrder]: ...

    def closed_orders(self, symbols: Iterable[str], after: datetime) -> list[BrokerOrder]: ...

    def all_orders(self, symbols: Iterable[str], after: datetime) -> list[BrokerOrder]: ...

    def cancel_order(self, order_id: str) -> None: ...

    def replace_stop(self, order_id: str, stop_price: Decimal) -> BrokerOrder:
        """Move an open stop order (a bracket's stop leg too) to `stop_price`; answers the new order, which
        has a new id and replaces `order_id` (Alpaca's `PATCH /v2/orders/{order_id}`)."""
        ...

    def close_position(self, symbol: str) -> BrokerOrder: ...

    def daily_bars(self, symbols: Iterable[str], start: date, end: date) -> list[Bar]: ...

    def corporate_actions(self, symbols: Iterable[str], start: date, end: date) -> list[CorporateAction]: ...
