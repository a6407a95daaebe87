"""Stock splits as the pipeline needs them: which symbol, by what ratio, from which session on, and what a
position's quantity and levels become.

A split of `ratio` (new shares per old share: 2 for a 2:1 forward split, 0.2 for a 1:5 reverse split)
multiplies the quantity and divides every price — entry, stop, take-profit, trailing high-water mark — so
the position, its risk and its P&L are unchanged. From the ex-date on, the market trades at the new prices:
a stop left at the old price would fire at once on a forward split (selling a position whose value did not
move) or never on a reverse split (protection silently off).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

FORWARD_SPLIT = "forward_split"
REVERSE_SPLIT = "reverse_split"
NAME_CHANGE = "name_change"
CENT = Decimal("0.01")
SUB_DOLLAR_TICK = Decimal("0.0001")  # Alpaca accepts 4 decimals below $1, 2 above


@dataclass(frozen=True, slots=True)
class CorporateAction:
    kind: str  # FORWARD_SPLIT | REVERSE_SPLIT | NAME_CHANGE
    symbol: str
    ex_date: date
    old_rate: Decimal = Decimal(1)
    new_rate: Decimal = Decimal(1)
    new_symbol: str | None = None  # for a name change

    @property
    def ratio(self) -> Decimal:
        """New shares per old share."""
        return self.new_rate / self.old_rate

    @property
    def key(self) -> str:
        """Stable identity of the action: what makes applying it idempotent."""
        return f"{self.kind}:{self.symbol}:{self.ex_date.isoformat()}:{self.old_rate}:{self.new_rate}"

    @property
    def is_split(self) -> bool:
        return self.kind in (FORWARD_SPLIT, REVERSE_SPLIT)

    def describe(self) -> str:
        if self.kind == NAME_CHANGE:
            return f"{self.symbol} renamed {self.new_symbol} on {self.ex_date}"
        return f"{self.symbol} {self.new_rate:g}:{self.old_rate:g} {self.kind.replace('_', ' ')} on {self.ex_date}"


def rebased_price(price: Decimal | None, ratio: Decimal) -> Decimal | None:
    """A price after a split of `ratio`, to the tick Alpaca accepts (a cent above $1, 1/100 cent below)."""
    if price is None:
        return None
    value = price / ratio
    tick = CENT if value >= 1 else SUB_DOLLAR_TICK
    return value.quantize(tick, rounding=ROUND_HALF_UP)


def rebased_qty(qty: Decimal, ratio: Decimal) -> Decimal:
    """Whole shares after the split; the fraction is paid as cash in lieu (the broker's position says how much
    exactly, and the reconciliation follows it)."""
    if qty != qty.to_integral_value():
        return qty * ratio  # a fractional position stays fractional
    return (qty * ratio).to_integral_value(rounding=ROUND_FLOOR)
