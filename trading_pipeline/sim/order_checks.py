"""What an order is checked against before the book accepts it: the shares the account holds and does not
already hold for other orders, the buying power it has left after its open orders, and the price levels of a
bracket's exits.

Every refusal is Alpaca's: 403 (code 40310000) for quantity and buying power, 422 for levels. The shape of
the request itself was checked before (`order_requests.py`, `order_rules.py`).

Buying power, from Alpaca's orders guide (alpaca-docs content/trading/orders.md, "Buying Power"):
- "The calculated value of an opening buy order is the order's limit price multiplied by the order's
  quantity. In the case of market buy orders, the limit price is 2.5% to 4% above the current market price";
  the simulator takes the ask plus 2.5% (MARKET_BUY_COLLAR), a stop order its stop price;
- "The calculated value of an opening sell short order is MAX(order's limit price, 3% above the current ask
  price) multiplied by the order's quantity";
- "your available buying power is reduced by your existing open buy long and sell short orders, whereas your
  sell long and buy to cover orders do not replenish your available buying power until they have executed."
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol

from trading_pipeline.sim.account import AccountValues, MarketView, SimOrder, SimPosition
from trading_pipeline.sim.errors import CODE_FORBIDDEN, SimApiError, invalid, unprocessable
from trading_pipeline.sim.order_requests import OrderParams
from trading_pipeline.sim.universe import SimAsset

CENT = Decimal("0.01")
MARKET_BUY_COLLAR = Decimal("0.025")
SHORT_SELL_COLLAR = Decimal("0.03")
OPENING_INTENTS = frozenset({"buy_to_open", "sell_to_open"})


class AccountBook(Protocol):
    """What the checks read (implemented by `OrderBook`)."""

    market: MarketView
    positions: dict[str, SimPosition]
    pattern_day_trader: bool

    def held_for_orders(self, symbol: str) -> Decimal: ...

    def qty_available(self, symbol: str) -> Decimal: ...

    def account_values(self) -> AccountValues: ...


def reference_price(book: AccountBook, params: OrderParams) -> Decimal:
    touch = book.market.touch(params.symbol)
    if touch is None:  # halted: the frozen quote's level
        last = book.market.last_price(params.symbol)
        touch = (last, last)
    bid, ask = touch
    if params.limit_price is not None:
        return params.limit_price
    if params.stop_price is not None:
        return params.stop_price
    return ask if params.side == "buy" else bid


def order_value(
    market: MarketView, symbol: str, side: str, qty: Decimal, limit_price: Decimal | None, stop_price: Decimal | None
) -> Decimal:
    """An opening order's calculated value, as Alpaca checks it against buying power (see the module doc)."""
    touch = market.touch(symbol)
    ask = touch[1] if touch is not None else market.last_price(symbol)
    if side == "sell":
        return qty * max(limit_price or Decimal(0), ask * (1 + SHORT_SELL_COLLAR))
    price = limit_price if limit_price is not None else stop_price
    return qty * (price if price is not None else ask * (1 + MARKET_BUY_COLLAR))


def open_orders_value(market: MarketView, orders: Iterable[SimOrder]) -> Decimal:
    """What open buy-long and sell-short orders take from buying power: each one's calculated value for what is
    left to fill. Exits (a bracket's legs, sells of a long, buys to cover) take nothing."""
    total = Decimal(0)
    for order in orders:
        if order.is_open and order.position_intent in OPENING_INTENTS:
            remaining = order.qty - order.filled_qty
            if remaining > 0:
                total += order_value(market, order.symbol, order.side, remaining, order.limit_price, order.stop_price)
    return total


def check_quantity_and_power(book: AccountBook, params: OrderParams, asset: SimAsset) -> None:
    position = book.positions.get(params.symbol)
    held_qty = position.qty if position is not None else Decimal(0)
    reduces = (held_qty > 0 and params.side == "sell") or (held_qty < 0 and params.side == "buy")
    if reduces and params.order_class != "bracket":
        if params.qty > book.qty_available(params.symbol):
            raise insufficient_qty(book, params.symbol, params.qty)
        return
    if params.side == "sell" and not asset.shortable:
        raise SimApiError(403, f"asset {params.symbol} cannot be sold short", CODE_FORBIDDEN)
    if params.side == "sell" and params.qty != params.qty.to_integral_value():
        # fractional-trading.md: "We do not support short sales in fractional orders."; Alpaca answers 42210000.
        raise unprocessable("fractional orders cannot be sold short")
    check_buying_power(book, params)


def check_buying_power(book: AccountBook, params: OrderParams) -> None:
    """An opening order worth more than the buying power its open orders leave is Alpaca's 403, with the body
    Alpaca sends: {"buying_power": "3388.32", "code": 40310000, "cost_basis": "27032.36", "message":
    "insufficient buying power"} (as clients log it; the OpenAPI spec's postOrder 403: "Buying power or
    shares is not sufficient.")."""
    cost = order_value(book.market, params.symbol, params.side, params.qty, params.limit_price, params.stop_price)
    buying_power = book.account_values().buying_power  # already net of the open orders' value
    if cost > buying_power:
        raise SimApiError(
            403,
            "insufficient buying power",
            CODE_FORBIDDEN,
            buying_power=str(buying_power),
            cost_basis=str(cost.quantize(CENT)),
        )


def insufficient_qty(book: AccountBook, symbol: str, requested: Decimal) -> SimApiError:
    """Alpaca's 403 for selling (or covering) more than the position has free of open orders, with the fields
    alpaca-py's `FailedClosePositionDetails` reads (alpaca-py tests/broker/broker_client/test_trading_routes.py:
    {"available": "0", "code": 40310000, "existing_qty": "1000", "held_for_orders": "1000",
    "message": "insufficient qty available for order (requested: 1000, available: 0)", "symbol": "SQQQ"})."""
    position = book.positions.get(symbol)
    existing = abs(position.qty) if position is not None else Decimal(0)
    available = book.qty_available(symbol)
    return SimApiError(
        403,
        f"insufficient qty available for order (requested: {requested}, available: {available})",
        CODE_FORBIDDEN,
        available=str(available),
        existing_qty=str(existing),
        held_for_orders=str(book.held_for_orders(symbol)),
        symbol=symbol,
    )


def check_exit_levels(book: AccountBook, params: OrderParams) -> None:
    base = reference_price(book, params)
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
