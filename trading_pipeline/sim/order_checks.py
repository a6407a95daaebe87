"""What an order is checked against before the book accepts it: the shares the account holds and does not
already hold for other orders, the buying power it has, and the price levels of a bracket's exits.

Every refusal is Alpaca's: 403 (code 40310000) for quantity and buying power, 422 for levels. The shape of
the request itself was checked before (`order_requests.py`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from trading_pipeline.sim.account import AccountValues, MarketView, SimPosition
from trading_pipeline.sim.errors import CODE_FORBIDDEN, SimApiError, invalid
from trading_pipeline.sim.order_requests import OrderParams
from trading_pipeline.sim.universe import SimAsset

CENT = Decimal("0.01")


class AccountBook(Protocol):
    """What the checks read (implemented by `OrderBook`)."""

    market: MarketView
    positions: dict[str, SimPosition]

    def held_for_orders(self, symbol: str) -> Decimal: ...

    def qty_available(self, symbol: str) -> Decimal: ...

    def account_values(self) -> AccountValues: ...


def reference_price(book: AccountBook, params: OrderParams) -> Decimal:
    touch = book.market.touch(params.symbol)
    assert touch is not None
    bid, ask = touch
    if params.limit_price is not None:
        return params.limit_price
    if params.stop_price is not None:
        return params.stop_price
    return ask if params.side == "buy" else bid


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
        raise SimApiError(403, "fractional orders cannot be sold short", CODE_FORBIDDEN)
    cost = params.qty * reference_price(book, params)
    buying_power = book.account_values().buying_power
    if cost > buying_power:
        raise SimApiError(
            403, f"insufficient buying power (required: {cost:.2f}, available: {buying_power})", CODE_FORBIDDEN
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
