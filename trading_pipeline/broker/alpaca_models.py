"""alpaca-py's models as the product's types, and back: Decimal money (never NaN, Infinity or a float),
timezone-aware UTC times, enums; `BrokerOrder.raw` JSON-safe. A value the product must not act on (a fill
without a usable price, a timestamp without a timezone) is a `BrokerError`, never a guess."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from alpaca.trading import requests as sdk_requests
from alpaca.trading.models import Order as SdkOrder
from pydantic import ValidationError

from trading_pipeline.broker.alpaca_calls import first_line
from trading_pipeline.broker.base import (
    Bar,
    BrokerError,
    BrokerOrder,
    OrderClass,
    OrderRejected,
    OrderRequest,
    OrderType,
    TimeInForce,
)
from trading_pipeline.domain.jsonsafe import to_jsonable
from trading_pipeline.domain.types import OrderSide, Quote

NEW_YORK = ZoneInfo("America/New_York")


def to_broker_order(order: SdkOrder) -> BrokerOrder:
    """An alpaca-py Order as the product's BrokerOrder; `raw` is JSON-safe (no UUID/datetime objects).

    A fill is recorded as a close price: a "filled" order without a finite fill price above 0 is a BrokerError
    (the close stays `closing` and is flagged), never a trade closed at NaN, 0 or a negative price."""
    order_type = order.type or order.order_type
    filled_avg_price = money(order.filled_avg_price, "filled_avg_price")
    if enum_value(order.status) == "filled" and (filled_avg_price is None or filled_avg_price <= 0):
        raise BrokerError(
            f"order {order.client_order_id}: broker reports it filled without a usable fill price "
            f"(filled_avg_price {order.filled_avg_price!r})"
        )
    return BrokerOrder(
        id=str(order.id),
        client_order_id=order.client_order_id,
        symbol=order.symbol or "",
        side=OrderSide(enum_value(order.side)) if order.side is not None else OrderSide.BUY,
        qty=money(order.qty, "qty") or Decimal(0),
        type=OrderType(enum_value(order_type)) if order_type is not None else OrderType.MARKET,
        status=enum_value(order.status),
        filled_qty=money(order.filled_qty, "filled_qty") or Decimal(0),
        filled_avg_price=filled_avg_price,
        submitted_at=utc_or_none(order.submitted_at),
        filled_at=utc_or_none(order.filled_at),
        order_class=OrderClass(enum_value(order.order_class) or "simple"),
        limit_price=money(order.limit_price, "limit_price"),
        stop_price=money(order.stop_price, "stop_price"),
        legs=tuple(to_broker_order(leg) for leg in order.legs or ()),
        raw=to_jsonable(order.model_dump(mode="json")),  # type: ignore[arg-type]
    )


def sdk_order_request(request: OrderRequest) -> sdk_requests.OrderRequest:
    take_profit = (
        sdk_requests.TakeProfitRequest(limit_price=float(request.take_profit_limit_price))
        if request.take_profit_limit_price is not None
        else None
    )
    stop_loss = (
        sdk_requests.StopLossRequest(stop_price=float(request.stop_loss_stop_price))
        if request.stop_loss_stop_price is not None
        else None
    )
    try:
        side = OrderSide(request.side)
        time_in_force = TimeInForce(request.time_in_force)
        order_class = OrderClass(request.order_class)
        order_type = OrderType(request.type)
    except ValueError as exc:  # OrderRequest is a plain dataclass: a caller can still pass a bad string
        raise OrderRejected(f"invalid order {request.client_order_id}: {exc}") from None
    common: dict[str, Any] = {
        "symbol": request.symbol,
        "qty": float(request.qty),
        "side": side.value,
        "time_in_force": time_in_force.value,
        "client_order_id": request.client_order_id,
        "order_class": order_class.value,
        "take_profit": take_profit,
        "stop_loss": stop_loss,
    }
    kinds: dict[OrderType, tuple[type[sdk_requests.OrderRequest], dict[str, Any]]] = {
        OrderType.MARKET: (sdk_requests.MarketOrderRequest, {}),
        OrderType.LIMIT: (sdk_requests.LimitOrderRequest, {"limit_price": _float(request.limit_price)}),
        OrderType.STOP: (sdk_requests.StopOrderRequest, {"stop_price": _float(request.stop_price)}),
        OrderType.STOP_LIMIT: (
            sdk_requests.StopLimitOrderRequest,
            {"stop_price": _float(request.stop_price), "limit_price": _float(request.limit_price)},
        ),
    }
    if order_type not in kinds:
        raise OrderRejected(f"order type {order_type.value} is not supported by this adapter")
    model, extra = kinds[order_type]
    try:
        return model(**common, **{k: v for k, v in extra.items() if v is not None})
    except (ValidationError, ValueError) as exc:
        # Refused before sending: the SDK's own validation (e.g. a bracket without its legs).
        raise OrderRejected(f"invalid order {request.client_order_id}: {first_line(exc)}") from None


def quote_from_sdk(symbol: str, sdk_quote: Any) -> Quote | None:
    """The quote, or None when it must not be used. One bad quote (NaN, 0, no timezone) makes its own symbol
    missing; it must not fail the request for every other symbol (a NaN used to raise InvalidOperation here
    and stop the whole sweep)."""
    try:
        bid = decimal_or_none(sdk_quote.bid_price)
        ask = decimal_or_none(sdk_quote.ask_price)
        timestamp = utc(sdk_quote.timestamp)
    except BrokerError:
        return None
    if bid is None or ask is None or not bid.is_finite() or not ask.is_finite() or bid <= 0 or ask <= 0:
        return None  # Alpaca sends 0 for a missing side; a 0 must never reach a stop-loss decision
    return Quote(symbol=symbol, bid=bid, ask=ask, timestamp=timestamp)


def bar_from_sdk(symbol: str, item: Any) -> Bar:
    return Bar(
        symbol=symbol,
        timestamp=utc(item.timestamp),
        open=decimal_or_none(item.open) or Decimal(0),
        high=decimal_or_none(item.high) or Decimal(0),
        low=decimal_or_none(item.low) or Decimal(0),
        close=decimal_or_none(item.close) or Decimal(0),
        volume=int(item.volume),
    )


def decimal_or_none(value: Any, field: str = "a number") -> Decimal | None:
    """Alpaca money arrives as strings (trading) or floats (data); via str() a float keeps its short form."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise BrokerError(f"broker sent {str(value)[:40]!r} as {field}, not a number") from None


def money(value: Any, field: str) -> Decimal | None:
    """A finite amount or None: NaN/Infinity from the broker is an error, never a price or a quantity."""
    amount = decimal_or_none(value, field)
    if amount is not None and not amount.is_finite():
        raise BrokerError(f"broker sent {amount} as {field}")
    return amount


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def enum_value(member: Any) -> str:
    return str(member.value) if isinstance(member, Enum) else str(member)


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise BrokerError(f"broker sent a timestamp without timezone: {moment.isoformat()}")
    return moment.astimezone(UTC)


def utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


def new_york_wall_time(moment: datetime) -> datetime:
    wall = moment.replace(tzinfo=NEW_YORK) if moment.tzinfo is None else moment
    return wall.astimezone(UTC)
