"""What POST /v2/orders carries, validated as Alpaca validates it: `parse_order_request` → `OrderParams`.

Every refusal is a 422 whose message says what is wrong, in Alpaca's words where they are known; which fields
go together (fractional and notional sizes, extended hours, time in force) is `order_rules.py`. Whether the
account can afford the order, or holds the shares, is the order book's question (`orders.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from trading_pipeline.sim.errors import invalid
from trading_pipeline.sim.order_rules import check_combinations, check_size

SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit", "stop", "stop_limit")
# Every value Alpaca takes (oas/trading/openapi.yaml, TimeInForce); the simulator models day and gtc only
# (order_rules.MODELLED_TIMES_IN_FORCE) and refuses the others after Alpaca's own rules.
TIMES_IN_FORCE = ("day", "gtc", "opg", "cls", "ioc", "fok")
ORDER_CLASSES = ("simple", "bracket", "oco", "oto")
MAX_CLIENT_ORDER_ID_LENGTH = 128


@dataclass
class OrderParams:
    """A validated order request (what POST /v2/orders carries). A notional request has `qty` 0 and its
    `notional`; the simulator refuses it once Alpaca's rules have passed (`order_rules.py`)."""

    symbol: str
    qty: Decimal
    side: str
    type: str
    time_in_force: str
    order_class: str = "simple"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    client_order_id: str | None = None
    take_profit_limit_price: Decimal | None = None
    stop_loss_stop_price: Decimal | None = None
    stop_loss_limit_price: Decimal | None = None
    extended_hours: bool = False
    notional: Decimal | None = None


def _decimal(payload: Mapping[str, Any], name: str, *, where: str = "") -> Decimal | None:
    raw = payload.get(name)
    label = f"{where}{name}"
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise invalid(f"{label} must be a number")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise invalid(f"invalid {label}: {raw!r}") from None
    if not value.is_finite():
        raise invalid(f"invalid {label}: {raw!r}")
    try:
        # 10.0 (alpaca-py sends floats) is 10: keep messages and echoed quantities as Alpaca shows them.
        return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()
    except InvalidOperation:  # more digits than the context holds (e.g. "1e30"): a 422, not a 500
        raise invalid(f"invalid {label}: {raw!r}") from None


def _positive(value: Decimal | None, label: str) -> None:
    if value is not None and value <= 0:
        raise invalid(f"{label} must be > 0")


def _choice(payload: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    raw = payload.get(name, default)
    if raw is None or raw == "":
        if default is not None:
            return default
        raise invalid(f"{name} is required")
    if not isinstance(raw, str) or raw.lower() not in allowed:
        raise invalid(f"invalid {name}: {raw!r} (expected one of {', '.join(allowed)})")
    return raw.lower()


def parse_order_request(payload: Any) -> OrderParams:
    """Validate a POST /v2/orders body; SimApiError(422) says what is wrong, as Alpaca does."""
    if not isinstance(payload, Mapping):
        raise invalid("request body must be a JSON object")
    symbol = payload.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise invalid("symbol is required")
    qty = _decimal(payload, "qty")
    notional = _decimal(payload, "notional")
    check_size(qty, notional)
    _positive(qty, "qty")
    _positive(notional, "notional")
    side = _choice(payload, "side", SIDES)
    order_type = _choice(payload, "type", ORDER_TYPES)
    tif = _choice(payload, "time_in_force", TIMES_IN_FORCE)
    order_class = _choice(payload, "order_class", ORDER_CLASSES, default="simple")
    limit_price = _decimal(payload, "limit_price")
    stop_price = _decimal(payload, "stop_price")
    _positive(limit_price, "limit_price")
    _positive(stop_price, "stop_price")
    client_order_id = payload.get("client_order_id")
    if client_order_id is not None:
        if not isinstance(client_order_id, str) or not client_order_id:
            raise invalid("client_order_id must be a non-empty string")
        if len(client_order_id) > MAX_CLIENT_ORDER_ID_LENGTH:
            raise invalid(f"client_order_id must be no more than {MAX_CLIENT_ORDER_ID_LENGTH} characters")
    take_profit = payload.get("take_profit") or {}
    stop_loss = payload.get("stop_loss") or {}
    if not isinstance(take_profit, Mapping) or not isinstance(stop_loss, Mapping):
        raise invalid("take_profit and stop_loss must be objects")
    params = OrderParams(
        symbol=symbol,
        qty=qty if qty is not None else Decimal(0),
        side=side,
        type=order_type,
        time_in_force=tif,
        order_class=order_class,
        limit_price=limit_price,
        stop_price=stop_price,
        client_order_id=client_order_id,
        take_profit_limit_price=_decimal(take_profit, "limit_price", where="take_profit."),
        stop_loss_stop_price=_decimal(stop_loss, "stop_price", where="stop_loss."),
        stop_loss_limit_price=_decimal(stop_loss, "limit_price", where="stop_loss."),
        extended_hours=_extended_hours(payload.get("extended_hours")),
        notional=notional,
    )
    _positive(params.take_profit_limit_price, "take_profit.limit_price")
    _positive(params.stop_loss_stop_price, "stop_loss.stop_price")
    _positive(params.stop_loss_limit_price, "stop_loss.limit_price")
    _check_shape(params)
    check_combinations(params)
    return params


def _extended_hours(raw: Any) -> bool:
    # alpaca-py sends a JSON boolean; the orders guide's examples also write "false" as a string.
    if isinstance(raw, str):
        return raw.strip().lower() == "true"
    return bool(raw or False)


def _check_shape(p: OrderParams) -> None:
    if p.type in ("limit", "stop_limit") and p.limit_price is None and p.order_class != "oco":
        raise invalid(f"limit_price is required for {p.type} orders")
    if p.type in ("stop", "stop_limit") and p.stop_price is None:
        raise invalid(f"stop_price is required for {p.type} orders")
    if p.order_class == "bracket":
        if p.take_profit_limit_price is None:
            raise invalid("bracket orders require take_profit.limit_price")
        if p.stop_loss_stop_price is None:
            raise invalid("bracket orders require stop_loss.stop_price")
        if p.type not in ("market", "limit"):
            raise invalid("bracket orders must be market or limit orders")
    elif p.order_class == "oco":
        if p.type != "limit":
            raise invalid("oco orders must be limit orders")
        if p.take_profit_limit_price is None and p.limit_price is None:
            raise invalid("oco orders require take_profit.limit_price")
        if p.stop_loss_stop_price is None:
            raise invalid("oco orders require stop_loss.stop_price")
        take_profit = p.take_profit_limit_price or p.limit_price
        assert take_profit is not None
        # A sell OCO protects a long: profit above, stop below. A buy OCO protects a short: the reverse.
        if p.side == "sell" and take_profit <= p.stop_loss_stop_price:
            raise invalid("take_profit.limit_price must be above stop_loss.stop_price for a sell oco order")
        if p.side == "buy" and take_profit >= p.stop_loss_stop_price:
            raise invalid("take_profit.limit_price must be below stop_loss.stop_price for a buy oco order")
    elif p.order_class == "oto":
        if p.take_profit_limit_price is None and p.stop_loss_stop_price is None:
            raise invalid("oto orders require take_profit or stop_loss")
        if p.take_profit_limit_price is not None and p.stop_loss_stop_price is not None:
            raise invalid("oto orders take either take_profit or stop_loss, not both; use bracket")
    elif p.take_profit_limit_price is not None or p.stop_loss_stop_price is not None:
        raise invalid("take_profit/stop_loss require order_class bracket, oco or oto")
