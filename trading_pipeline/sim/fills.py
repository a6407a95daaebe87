"""One fill: whether a working order fills at the current touch, at what price, and what the
fill does to the position and the order.

- Market orders fill in full at the ask (buy) / bid (sell).
- Limit orders fill when marketable, at the touch, which is never worse than the limit.
- Stop orders trigger when the touch crosses the stop and then fill like a market order, so a gap fills
  *through* the stop at the gapped price; stop-limit orders trigger at the stop and then behave as a limit.
- A halted symbol (no touch) fills nothing.
- Partial fills, when switched on (`PartialFills`): a market order fills only a share of what is left, then
  stays `partially_filled` and working; the rest fills at a later matching pass. Alpaca's paper trading docs
  (content/trading/paper-trading.md): "When orders are eligible to be filled, they will receive partial fills
  for a random size 10% of the time. If the order price is still marketable, the remaining quantity would be
  re-evaluated for a subsequent fill." So a client must never assume one fill per order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

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


@dataclass
class PartialFills:
    """Whether the next fill of a market order is partial, and how large: with probability `rate`, `fraction` of
    what is left (whole shares unless the asset is fractionable; never nothing, never all)."""

    seed: int = 0
    rate: float = 0.0
    fraction: Decimal = Decimal("0.5")
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"partial-fills-{self.seed}")

    def configure(self, rate: float, fraction: Decimal | float | str = Decimal("0.5")) -> None:
        share = Decimal(str(fraction))
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"partial fill rate must be between 0 and 1, got {rate}")
        if not Decimal(0) < share < Decimal(1):
            raise ValueError(f"partial fill fraction must be strictly between 0 and 1, got {share}")
        self.rate = float(rate)
        self.fraction = share

    def quantity(self, order: SimOrder, asset: SimAsset) -> Decimal | None:
        """The part of `order` that fills now if this fill is partial, else None (it fills in full)."""
        if order.type != "market" or self.rate <= 0.0 or self._rng.random() >= self.rate:
            return None
        remaining = order.qty - order.filled_qty
        part = remaining * self.fraction
        part = (
            part.quantize(Decimal("0.000000001"), ROUND_DOWN)
            if asset.fractionable
            else part.to_integral_value(ROUND_DOWN)
        )
        return part if Decimal(0) < part < remaining else None


def settle(
    positions: dict[str, SimPosition],
    order: SimOrder,
    price: Decimal,
    asset: SimAsset,
    now: datetime,
    qty: Decimal | None = None,
) -> Decimal:
    """Fill `qty` of `order` (default: all that is left) at `price`: update the position and the order (the
    average fill price over every fill; `filled` once nothing is left); return the cash it costs."""
    remaining = order.qty - order.filled_qty
    part = remaining if qty is None else min(qty, remaining)
    signed = part if order.side == "buy" else -part
    _apply_to_position(positions, order.symbol, signed, price, asset)
    before = order.filled_qty
    order.filled_qty = before + part
    previous = order.filled_avg_price if before > 0 and order.filled_avg_price is not None else Decimal(0)
    order.filled_avg_price = (previous * before + price * part) / order.filled_qty
    order.status = "filled" if order.filled_qty >= order.qty else "partially_filled"
    if order.status == "filled":
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
