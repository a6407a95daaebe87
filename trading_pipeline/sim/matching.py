"""Matching: after every price change, which working orders fill, and what a fill does to the order's family.

The rules of one fill (price, trigger, settlement) are in `fills.py`; this is the loop over the book: a fill
can activate legs that are marketable at once, and cancels the one-cancels-other siblings of the order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from trading_pipeline.sim.account import MarketView, SimOrder, SimPosition
from trading_pipeline.sim.fills import PartialFills, fill_price, settle


class MatchingBook(Protocol):
    """What matching reads and changes (implemented by `OrderBook`)."""

    market: MarketView
    positions: dict[str, SimPosition]
    cash: Decimal
    working: dict[str, SimOrder]
    partial_fills: PartialFills

    def legs(self, order: SimOrder) -> list[SimOrder]: ...

    def cancel_siblings(self, order: SimOrder) -> None: ...


def evaluate(book: MatchingBook) -> int:
    """Fill every working order whose condition holds at the current quotes; return how many filled."""
    if not book.market.session_open or not book.working:
        return 0
    fills = 0
    partly: set[str] = set()  # filled in part in this pass: the rest waits for a later pass
    progressed = True
    while progressed:  # a fill can activate legs that are marketable at once
        progressed = False
        for order in list(book.working.values()):
            if order.id not in book.working or order.id in partly:
                continue  # canceled as the sibling of an order filled in this pass, or partly filled in it
            price = fill_price(order, book.market.touch(order.symbol))
            if price is not None:
                if not _fill(book, order, price):
                    partly.add(order.id)
                fills += 1
                progressed = True
    return fills


def _fill(book: MatchingBook, order: SimOrder, price: Decimal) -> bool:
    """Fill `order` (in part, if partial fills say so); True when it is now completely filled."""
    asset = book.market.asset(order.symbol)
    assert asset is not None
    now = book.market.now
    part = book.partial_fills.quantity(order, asset)
    book.cash -= settle(book.positions, order, price, asset, now, part)
    if order.status != "filled":
        return False  # partly filled: still working; its legs wait for the entry to fill completely
    book.working.pop(order.id, None)
    _activate_legs(book, order)
    book.cancel_siblings(order)
    return True


def _activate_legs(book: MatchingBook, order: SimOrder) -> None:
    """The entry filled: its legs go live. Alpaca docs (trading/orders.md, bracket orders): "The second and
    third orders won't be active until the first order is completely filled." A bracket's stop-loss leg works
    but stays reported `held` (`SimOrder.is_held_stop_leg`); the take-profit (and an OTO's one leg) is `new`."""
    for leg in book.legs(order):
        if leg.is_terminal or leg.id in book.working:
            continue
        leg.status = "held" if leg.is_held_stop_leg else "new"
        leg.updated_at = book.market.now
        book.working[leg.id] = leg
