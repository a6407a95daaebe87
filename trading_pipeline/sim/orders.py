"""The simulator's account: cash, positions and orders, with Alpaca's order semantics.

What is modelled, and how it maps to Alpaca:
- Market orders fill in full at the ask (buy) / bid (sell) at the first price evaluation in a session.
  Submitted while the market is closed they are `accepted` and fill at the next open, like Alpaca's queued
  day orders. The POST response shows the order as created (`new`/`accepted`, nothing filled) and the
  fill happens right after, so a client must look the order up to learn its fill, as with Alpaca.
- Limit orders fill when marketable (at the touch, which is never worse than the limit); stop orders
  trigger when the touch crosses the stop and then fill like a market order (so a gap fills *through* the
  stop at the gapped price); stop-limit orders trigger at the stop and then behave as a limit.
- Bracket = entry + take-profit limit leg + stop-loss stop leg; OTO = entry + one leg. Legs are `held`
  until the entry fills, then `new`. OCO = take-profit limit (the parent) + stop leg on an existing
  position, both live at once. When one exit fills or is canceled, its sibling is canceled.
- Quantity held by open exit orders cannot be sold again or closed: 403 "insufficient qty available".
- Day orders expire at the close of the session they were submitted for; no partial fills; no
  extended hours; no wash-trade checks; buying power is Reg-T style (2 x (equity - initial margin)).
- Every id is a UUID drawn from a seeded generator, so a replayed scenario has the same ids.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from trading_pipeline.sim.universe import SimAsset

# Alpaca error codes as they appear in response bodies.
CODE_INVALID_REQUEST = 40010001
CODE_MALFORMED_BODY = 40010000
CODE_UNAUTHORIZED = 40110000
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000
CODE_RATE_LIMITED = 42910000
CODE_INTERNAL = 50010000

SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit", "stop", "stop_limit")
TIMES_IN_FORCE = ("day", "gtc")
ORDER_CLASSES = ("simple", "bracket", "oco", "oto")
TERMINAL_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
WORKING_STATUSES = frozenset({"new", "accepted", "partially_filled"})
MAX_CLIENT_ORDER_ID_LENGTH = 128
GTC_LIFETIME = timedelta(days=90)
CENT = Decimal("0.01")


class SimApiError(Exception):
    """An error the simulator answers with an Alpaca-shaped body: {"code": ..., "message": ...}."""

    def __init__(self, status: int, message: str, code: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {} if self.code is None else {"code": self.code}
        body["message"] = self.message
        body.update(self.extra)
        return body


def invalid(message: str) -> SimApiError:
    return SimApiError(422, message, CODE_INVALID_REQUEST)


class MarketView(Protocol):
    """What the order book needs to know about the market (implemented by `Market`)."""

    @property
    def now(self) -> datetime: ...

    @property
    def session_open(self) -> bool: ...

    def asset(self, symbol: str) -> SimAsset | None: ...

    def touch(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        """(bid, ask) for a symbol that can trade now; None when halted or unknown."""

    def last_price(self, symbol: str) -> Decimal: ...

    def previous_close(self, symbol: str) -> Decimal: ...

    def day_order_expiry(self) -> datetime: ...


@dataclass
class OrderParams:
    """A validated order request (what POST /v2/orders carries)."""

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


@dataclass
class SimOrder:
    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    side: str
    qty: Decimal
    type: str
    time_in_force: str
    order_class: str
    status: str
    created_at: datetime
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    updated_at: datetime | None = None
    submitted_at: datetime | None = None
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    expires_at: datetime | None = None
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    parent_id: str | None = None
    leg_ids: list[str] = field(default_factory=list)
    # Orders sharing an exit group are one-cancels-other siblings (bracket legs, an OCO pair).
    exit_group: str | None = None
    position_intent: str | None = None
    extended_hours: bool = False
    triggered: bool = False

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        return not self.is_terminal


@dataclass
class SimPosition:
    symbol: str
    asset_id: str
    exchange: str
    qty: Decimal  # signed: negative for a short
    avg_entry_price: Decimal

    @property
    def side(self) -> str:
        return "long" if self.qty > 0 else "short"


@dataclass(frozen=True, slots=True)
class AccountValues:
    cash: Decimal
    long_market_value: Decimal
    short_market_value: Decimal
    equity: Decimal
    initial_margin: Decimal
    buying_power: Decimal
    last_equity: Decimal


# ---- request parsing ------------------------------------------------------------------------------------


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
    if payload.get("notional") not in (None, ""):
        raise invalid("notional orders are not supported by the simulator; send qty")
    qty = _decimal(payload, "qty")
    if qty is None:
        raise invalid("qty is required")
    _positive(qty, "qty")
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
        qty=qty,
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
        extended_hours=bool(payload.get("extended_hours") or False),
    )
    _positive(params.take_profit_limit_price, "take_profit.limit_price")
    _positive(params.stop_loss_stop_price, "stop_loss.stop_price")
    _positive(params.stop_loss_limit_price, "stop_loss.limit_price")
    _check_shape(params)
    return params


def _check_shape(p: OrderParams) -> None:
    if p.extended_hours:
        raise invalid("extended_hours orders are not supported by the simulator")
    if p.type in ("limit", "stop_limit") and p.limit_price is None and p.order_class != "oco":
        raise invalid(f"limit_price is required for {p.type} orders")
    if p.type in ("stop", "stop_limit") and p.stop_price is None:
        raise invalid(f"stop_price is required for {p.type} orders")
    if p.qty != p.qty.to_integral_value() and (p.type != "market" or p.order_class != "simple"):
        raise invalid("fractional qty is only allowed for simple market orders")
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


# ---- the book -------------------------------------------------------------------------------------------


class OrderBook:
    """Cash, positions and orders of the one simulated account. Callers hold the market lock."""

    def __init__(self, market: MarketView, *, seed: int, initial_cash: Decimal) -> None:
        self.market = market
        self._ids = random.Random(f"orders-{seed}")
        self.cash = Decimal(initial_cash)
        self.last_equity = Decimal(initial_cash)
        self.positions: dict[str, SimPosition] = {}
        self.orders: dict[str, SimOrder] = {}
        self._by_client_id: dict[str, SimOrder] = {}
        self._working: dict[str, SimOrder] = {}  # can fill now or at the open (not held, not terminal)

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    # ---- lookups ----

    def order(self, order_id: str) -> SimOrder:
        found = self.orders.get(order_id)
        if found is None:
            raise SimApiError(404, "order not found", CODE_NOT_FOUND)
        return found

    def order_by_client_id(self, client_order_id: str) -> SimOrder:
        found = self._by_client_id.get(client_order_id)
        if found is None:
            raise SimApiError(404, "order not found", CODE_NOT_FOUND)
        return found

    def legs(self, order: SimOrder) -> list[SimOrder]:
        return [self.orders[leg_id] for leg_id in order.leg_ids]

    def position(self, symbol: str) -> SimPosition:
        found = self.positions.get(symbol)
        if found is None:
            raise SimApiError(404, "position does not exist", CODE_NOT_FOUND)
        return found

    def held_for_orders(self, symbol: str) -> Decimal:
        """Quantity of the position committed to open exit orders; an OCO pair commits its qty once."""
        position = self.positions.get(symbol)
        if position is None:
            return Decimal(0)
        closing_side = "sell" if position.qty > 0 else "buy"
        by_group: dict[str, Decimal] = {}
        for order in self.orders.values():
            if order.symbol != symbol or order.side != closing_side or order.is_terminal:
                continue
            if order.status == "held":  # a leg waiting for its entry does not commit today's shares
                continue
            group = order.exit_group or order.id
            by_group[group] = max(by_group.get(group, Decimal(0)), order.qty - order.filled_qty)
        return sum(by_group.values(), Decimal(0))

    def qty_available(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        if position is None:
            return Decimal(0)
        return max(Decimal(0), abs(position.qty) - self.held_for_orders(symbol))

    def account_values(self) -> AccountValues:
        long_mv = Decimal(0)
        short_mv = Decimal(0)
        for position in self.positions.values():
            value = position.qty * self.market.last_price(position.symbol)
            if position.qty > 0:
                long_mv += value
            else:
                short_mv += value
        equity = self.cash + long_mv + short_mv
        initial_margin = (long_mv - short_mv) / 2
        buying_power = max(Decimal(0), (equity - initial_margin) * 2)
        return AccountValues(
            cash=self.cash,
            long_market_value=long_mv,
            short_market_value=short_mv,
            equity=equity,
            initial_margin=initial_margin,
            buying_power=buying_power.quantize(CENT),
            last_equity=self.last_equity,
        )

    # ---- submitting ----

    def place(self, params: OrderParams) -> SimOrder:
        """Create the order (and its legs) without evaluating fills; raise SimApiError like Alpaca would."""
        if params.client_order_id is not None and params.client_order_id in self._by_client_id:
            raise invalid("client_order_id must be unique")
        asset = self.market.asset(params.symbol)
        if asset is None:
            raise invalid(f"asset not found: {params.symbol}")
        if asset.status != "active" or not asset.tradable or self.market.touch(params.symbol) is None:
            raise invalid(f"asset {params.symbol} is not tradable")
        if params.qty != params.qty.to_integral_value() and not asset.fractionable:
            raise invalid(f"asset {params.symbol} is not fractionable")
        self._check_quantity_and_power(params, asset)
        if params.order_class in ("bracket", "oto"):
            self._check_exit_levels(params)
        return self._create(params, asset)

    def _reference_price(self, params: OrderParams) -> Decimal:
        touch = self.market.touch(params.symbol)
        assert touch is not None
        bid, ask = touch
        if params.limit_price is not None:
            return params.limit_price
        if params.stop_price is not None:
            return params.stop_price
        return ask if params.side == "buy" else bid

    def _check_quantity_and_power(self, params: OrderParams, asset: SimAsset) -> None:
        position = self.positions.get(params.symbol)
        held_qty = position.qty if position is not None else Decimal(0)
        reduces = (held_qty > 0 and params.side == "sell") or (held_qty < 0 and params.side == "buy")
        if reduces and params.order_class != "bracket":
            available = self.qty_available(params.symbol)
            if params.qty > available:
                raise SimApiError(
                    403,
                    f"insufficient qty available for order (requested: {params.qty}, available: {available})",
                    CODE_FORBIDDEN,
                    available=str(available),
                    existing_qty=str(abs(held_qty)),
                    held_for_orders=str(self.held_for_orders(params.symbol)),
                    symbol=params.symbol,
                )
            return
        if params.side == "sell" and not asset.shortable:
            raise SimApiError(403, f"asset {params.symbol} cannot be sold short", CODE_FORBIDDEN)
        if params.side == "sell" and params.qty != params.qty.to_integral_value():
            raise SimApiError(403, "fractional orders cannot be sold short", CODE_FORBIDDEN)
        cost = params.qty * self._reference_price(params)
        buying_power = self.account_values().buying_power
        if cost > buying_power:
            raise SimApiError(
                403, f"insufficient buying power (required: {cost:.2f}, available: {buying_power})", CODE_FORBIDDEN
            )

    def _check_exit_levels(self, params: OrderParams) -> None:
        base = self._reference_price(params)
        buy = params.side == "buy"
        tp = params.take_profit_limit_price
        sl = params.stop_loss_stop_price
        if tp is not None:
            if buy and tp < base + CENT:
                raise invalid(f"take_profit.limit_price must be >= base_price + 0.01 (base_price: {base})")
            if not buy and tp > base - CENT:
                raise invalid(f"take_profit.limit_price must be <= base_price - 0.01 (base_price: {base})")
        if sl is not None:
            if buy and sl > base - CENT:
                raise invalid(f"stop_loss.stop_price must be <= base_price - 0.01 (base_price: {base})")
            if not buy and sl < base + CENT:
                raise invalid(f"stop_loss.stop_price must be >= base_price + 0.01 (base_price: {base})")

    def _new_order(self, params: OrderParams, asset: SimAsset, **overrides: Any) -> SimOrder:
        now = self.market.now
        fields: dict[str, Any] = {
            "id": self.new_id(),
            "client_order_id": params.client_order_id or "",
            "symbol": asset.symbol,
            "asset_id": asset.id,
            "side": params.side,
            "qty": params.qty,
            "type": params.type,
            "time_in_force": params.time_in_force,
            "order_class": params.order_class,
            "status": "new" if self.market.session_open else "accepted",
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "limit_price": params.limit_price,
            "stop_price": params.stop_price,
        }
        fields.update(overrides)
        order = SimOrder(**fields)
        if not order.client_order_id:
            order.client_order_id = self.new_id()
        order.expires_at = self.market.day_order_expiry() if order.time_in_force == "day" else now + GTC_LIFETIME
        order.position_intent = self._position_intent(order)
        self.orders[order.id] = order
        self._by_client_id[order.client_order_id] = order
        if order.status in WORKING_STATUSES:
            self._working[order.id] = order
        return order

    def _position_intent(self, order: SimOrder) -> str:
        position = self.positions.get(order.symbol)
        qty = position.qty if position is not None else Decimal(0)
        if order.side == "buy":
            return "buy_to_close" if qty < 0 else "buy_to_open"
        return "sell_to_close" if qty > 0 else "sell_to_open"

    def _create(self, params: OrderParams, asset: SimAsset) -> SimOrder:
        exit_side = "sell" if params.side == "buy" else "buy"
        if params.order_class == "oco":
            limit = params.take_profit_limit_price or params.limit_price
            parent = self._new_order(params, asset, limit_price=limit, stop_price=None)
            parent.exit_group = parent.id
            leg = self._new_leg(params, asset, parent, side=params.side, stop_leg=True, status=parent.status)
            leg.exit_group = parent.id
            return parent
        parent = self._new_order(params, asset)
        if params.order_class in ("bracket", "oto"):
            group = f"{parent.id}:exits" if params.order_class == "bracket" else None
            if params.take_profit_limit_price is not None:
                leg = self._new_leg(params, asset, parent, side=exit_side, stop_leg=False, status="held")
                leg.exit_group = group
            if params.stop_loss_stop_price is not None:
                leg = self._new_leg(params, asset, parent, side=exit_side, stop_leg=True, status="held")
                leg.exit_group = group
        return parent

    def _new_leg(
        self, params: OrderParams, asset: SimAsset, parent: SimOrder, *, side: str, stop_leg: bool, status: str
    ) -> SimOrder:
        if stop_leg:
            order_type = "stop_limit" if params.stop_loss_limit_price is not None else "stop"
            limit, stop = params.stop_loss_limit_price, params.stop_loss_stop_price
        else:
            order_type, limit, stop = "limit", params.take_profit_limit_price, None
        leg_params = OrderParams(
            symbol=params.symbol,
            qty=params.qty,
            side=side,
            type=order_type,
            time_in_force=params.time_in_force,
            order_class=params.order_class,
        )
        leg = self._new_order(leg_params, asset, status=status, limit_price=limit, stop_price=stop, parent_id=parent.id)
        parent.leg_ids.append(leg.id)
        return leg

    # ---- canceling and closing ----

    def cancel(self, order_id: str) -> SimOrder:
        order = self.order(order_id)
        if order.is_terminal:
            raise SimApiError(422, f'order is already in "{order.status}" state', CODE_UNPROCESSABLE)
        self._cancel(order)
        for leg in self.legs(order):
            if not leg.is_terminal:
                self._cancel(leg)
        self._cancel_siblings(order)
        return order

    def _cancel(self, order: SimOrder, status: str = "canceled") -> None:
        now = self.market.now
        order.status = status
        order.updated_at = now
        if status == "canceled":
            order.canceled_at = now
        else:
            order.expired_at = now
        self._working.pop(order.id, None)

    def _cancel_siblings(self, order: SimOrder) -> None:
        if order.exit_group is None:
            return
        for other in self.orders.values():
            if other.exit_group == order.exit_group and other.id != order.id and not other.is_terminal:
                self._cancel(other)

    def close_position(self, symbol: str) -> SimOrder:
        position = self.position(symbol)
        qty = abs(position.qty)
        available = self.qty_available(symbol)
        if available < qty:
            held = self.held_for_orders(symbol)
            raise SimApiError(
                403,
                f"insufficient qty available for order (requested: {qty}, available: {available})",
                CODE_FORBIDDEN,
                available=str(available),
                existing_qty=str(qty),
                held_for_orders=str(held),
                symbol=symbol,
            )
        asset = self.market.asset(symbol)
        assert asset is not None
        if self.market.touch(symbol) is None:
            raise invalid(f"asset {symbol} is not tradable")
        params = OrderParams(
            symbol=symbol,
            qty=qty,
            side="sell" if position.qty > 0 else "buy",
            type="market",
            time_in_force="day",
        )
        return self._create(params, asset)

    # ---- the clock's hooks ----

    def on_open(self) -> None:
        """Orders accepted while closed become live at the open."""
        now = self.market.now
        for order in self._working.values():
            if order.status == "accepted":
                order.status = "new"
                order.updated_at = now

    def on_close(self) -> None:
        """Day orders end with the session; remember equity for last_equity."""
        now = self.market.now
        for order in list(self.orders.values()):
            if order.is_open and order.expires_at is not None and order.expires_at <= now:
                self._cancel(order, status="expired")
                for leg in self.legs(order):
                    if not leg.is_terminal:
                        self._cancel(leg)
        self.last_equity = self.account_values().equity

    # ---- fills ----

    def evaluate(self) -> int:
        """Fill every working order whose condition holds at the current quotes; return how many filled."""
        if not self.market.session_open or not self._working:
            return 0
        fills = 0
        progressed = True
        while progressed:  # a fill can activate legs that are marketable at once
            progressed = False
            for order in list(self._working.values()):
                if order.id not in self._working:
                    continue  # canceled as the sibling of an order filled in this pass
                price = self._fill_price(order)
                if price is not None:
                    self._fill(order, price)
                    fills += 1
                    progressed = True
        return fills

    def _fill_price(self, order: SimOrder) -> Decimal | None:
        touch = self.market.touch(order.symbol)
        if touch is None:
            return None  # halted: nothing fills
        bid, ask = touch
        buy = order.side == "buy"
        price = ask if buy else bid
        if order.type in ("stop", "stop_limit") and not order.triggered:
            assert order.stop_price is not None
            if not (ask >= order.stop_price if buy else bid <= order.stop_price):
                return None
            order.triggered = True
        if order.type in ("limit", "stop_limit"):
            assert order.limit_price is not None
            if not (ask <= order.limit_price if buy else bid >= order.limit_price):
                return None
        return price

    def _fill(self, order: SimOrder, price: Decimal) -> None:
        now = self.market.now
        signed = order.qty if order.side == "buy" else -order.qty
        self._apply_to_position(order, signed, price)
        self.cash -= signed * price
        order.status = "filled"
        order.filled_qty = order.qty
        order.filled_avg_price = price
        order.filled_at = now
        order.updated_at = now
        self._working.pop(order.id, None)
        for leg in self.legs(order):
            if leg.status == "held":
                leg.status = "new"
                leg.updated_at = now
                self._working[leg.id] = leg
        self._cancel_siblings(order)

    def _apply_to_position(self, order: SimOrder, signed: Decimal, price: Decimal) -> None:
        position = self.positions.get(order.symbol)
        if position is None:
            asset = self.market.asset(order.symbol)
            assert asset is not None
            self.positions[order.symbol] = SimPosition(order.symbol, asset.id, asset.exchange, signed, price)
            return
        old = position.qty
        new = old + signed
        if new == 0:
            del self.positions[order.symbol]
        elif old * signed > 0:  # adding to the position: average the entry
            position.avg_entry_price = (old * position.avg_entry_price + signed * price) / new
            position.qty = new
        elif old * new < 0:  # flipped through zero: the remainder is a new position at this price
            position.qty = new
            position.avg_entry_price = price
        else:  # reduced: the entry price of what is left is unchanged
            position.qty = new
