"""One fill: whether a working order fills at the current touch, at what price, and what the
fill does to the position and the order.

- Market orders fill in full at the ask (buy) / bid (sell).
- Limit orders fill when marketable, at the touch, which is never worse than the limit.
- Stop orders trigger when the touch crosses the stop and then fill like a market order, so a gap fills
  *through* the stop at the gapped price; stop-limit orders trigger at the stop and then behave as a limit.
- A halted symbol (no touch) fills nothing. No partial fills.

What a fill does to the rest of the order's family (legs go live, OCO siblings are canceled) is the order
loop of `matching.py`, which runs these rules after every price change.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from trading_pipeline.sim.account import SimOrder, SimPosition
from trading_pipeline.sim.universe import SimAsset


def fill_price(order: SimOrder, touch: tuple[Decimal, Decimal] | None) -> Decimal | None:
    """The price `order` fills at now, or None. Marks a stop order triggered once the touch crosses its stop."""
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


def settle(
    positions: dict[str, SimPosition], order: SimOrder, price: Decimal, asset: SimAsset, now: datetime
) -> Decimal:
    """Fill `order` in full at `price`: update the position and the order; return the cash it costs."""
    signed = order.qty if order.side == "buy" else -order.qty
    _apply_to_position(positions, order.symbol, signed, price, asset)
    order.status = "filled"
    order.filled_qty = order.qty
    order.filled_avg_price = price
    order.filled_at = now
    order.updated_at = now
    return signed * price


def _apply_to_position(
    positions: dict[str, SimPosition], symbol: str, signed: Decimal, price: Decimal, asset: SimAsset
) -> None:
    position = positions.get(symbol)
    if position is None:
        positions[symbol] = SimPosition(symbol, asset.id, asset.exchange, signed, price)
        return
    old = position.qty
    new = old + signed
    if new == 0:
        del positions[symbol]
    elif old * signed > 0:  # adding to the position: average the entry
        position.avg_entry_price = (old * position.avg_entry_price + signed * price) / new
        position.qty = new
    elif old * new < 0:  # flipped through zero: the remainder is a new position at this price
        position.qty = new
        position.avg_entry_price = price
    else:  # reduced: the entry price of what is left is unchanged
        position.qty = new
