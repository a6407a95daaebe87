"""When the broker's quantity differs from ours: is it a stock split (re-base, never sell on it) or drift?

A split multiplies the shares by a ratio and divides the price by it, so the cost basis is unchanged. A
quantity that moved by a split-like ratio (2:1, 3:2, 1:5 …) while the broker's cost basis still matches ours
is treated as a possible split: the position is not cut to the broker's quantity, and not sold on the jump
in price, until the corporate actions say what happened. Anything else is drift, repaired to what is held.
"""

from __future__ import annotations

from decimal import Decimal

SPLIT_RATIOS = (
    Decimal(2),
    Decimal(3),
    Decimal(4),
    Decimal(5),
    Decimal(10),
    Decimal(20),
    Decimal("1.5"),
    Decimal("1.25"),
)
QTY_TOLERANCE = Decimal("0.02")  # cash in lieu of fractional shares moves the quantity a little
BASIS_TOLERANCE = Decimal("0.05")


def split_like_ratio(
    our_qty: Decimal, our_price: Decimal, broker_qty: Decimal, broker_avg_price: Decimal
) -> Decimal | None:
    """The ratio broker_qty / our_qty when it looks like a split (forward > 1, reverse < 1) with the cost basis
    conserved; None when the difference is plain drift."""
    values = (our_qty, our_price, broker_qty, broker_avg_price)
    if not all(v.is_finite() and v > 0 for v in values):
        return None
    ratio = broker_qty / our_qty
    for candidate in SPLIT_RATIOS:
        for value in (candidate, 1 / candidate):
            if abs(ratio - value) <= value * QTY_TOLERANCE:
                ours, theirs = our_qty * our_price, broker_qty * broker_avg_price
                if abs(ours - theirs) <= ours * BASIS_TOLERANCE:
                    return value
    return None


# A book that vanishes at once is an incident (another account's keys, an empty listing during an outage), not
# a wave of sales: at least this many symbols and this share of the book missing in one read.
MASS_MISSING_SYMBOLS = 2
MASS_MISSING_SHARE = Decimal("0.5")


def is_mass_disappearance(missing: int, expected: int) -> bool:
    """Most of the book missing from one listing: never written off symbol by symbol."""
    if missing < MASS_MISSING_SYMBOLS or expected <= 0:
        return False
    return Decimal(missing) / Decimal(expected) >= MASS_MISSING_SHARE


def same_holding(our_qty: Decimal, our_price: Decimal, broker_qty: Decimal, broker_avg_price: Decimal) -> bool:
    """The broker's position under another symbol is our trade's shares (a name change not published yet):
    the same quantity at the same cost basis. Equal quantities at an average price within a cent a share."""
    values = (our_qty, our_price, broker_qty, broker_avg_price)
    if not all(v.is_finite() and v > 0 for v in values):
        return False
    return our_qty == broker_qty and abs(our_price - broker_avg_price) <= Decimal("0.01")
