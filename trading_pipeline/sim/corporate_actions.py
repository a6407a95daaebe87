"""Stock splits in the simulator: announced, listed by `GET /v1/corporate-actions`, applied on the ex-date.

When a split is applied — at the beginning-of-day process of its ex-date (07:30 New York, before the open:
Alpaca's daily-processes guide has the "Beginning-of-day Sync (BOD)" at 07:15–07:30 and says "Share splits are
processed as they happen and the beginning-of-day process will update the positions"), or at once when asked:

- the price re-bases: mid, bid and ask ÷ ratio (today's bar too when a session is in progress); the bars of
  earlier sessions keep the prices they traded at (raw bars, Alpaca's default `adjustment=raw`);
- the position: quantity × ratio, average entry price ÷ ratio (cost basis unchanged). A whole-share position
  keeps whole shares: the fraction is paid as cash in lieu at the re-based price ("In the case of reverse
  splits, there might be the cash in lieu for non-divisible shares", same guide). A fractional position stays
  fractional;
- open orders, as Alpaca's docs say:
  * orders of a bracket, OCO or OTO group are left exactly as they are — trading/orders.md, bracket orders:
    "Each order in the group is always sent with a DNR/DNC (Do Not Reduce/Do Not Cancel) instruction.
    Therefore, the order price will not be adjusted and the order will not be canceled in the event of a
    dividend or other corporate action." (The sentence sits in the bracket section; the sim applies it to OCO
    and OTO groups too, which Alpaca builds the same way.) So a stop leg at the old price fires at the next
    open after a forward split, unless the client replaces it before the open;
  * other GTC orders are re-based: quantity × ratio (floored to whole shares), limit and stop prices ÷ ratio
    to the tick — the OpenAPI spec's TimeInForce `gtc`: "Non-marketable GTC limit orders are subject to price
    adjustments to offset corporate actions affecting the issue." The spec speaks of limit orders only; the sim
    re-bases stop prices the same way (the exchanges' convention for resting orders);
  * day orders do not live to a BOD process (they expire at the close); an immediate split re-bases them
    like GTC orders.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from trading_pipeline.sim.account import SimOrder, SimPosition
from trading_pipeline.sim.orders import OrderBook
from trading_pipeline.sim.prices import PriceModel, round_to_tick

NEW_YORK = ZoneInfo("America/New_York")
BEGINNING_OF_DAY = time(7, 30)  # New York; Alpaca's BOD sync runs 07:15–07:30
FORWARD_SPLIT = "forward_split"
REVERSE_SPLIT = "reverse_split"
CENT = Decimal("0.01")
SUB_DOLLAR_TICK = Decimal("0.0001")
_AVG_PRICE_PLACES = Decimal("0.000001")


@dataclass
class SimSplit:
    """One announced split: `new_rate` new shares for every `old_rate` old ones (2:1 forward, 1:5 reverse)."""

    id: str
    symbol: str
    cusip: str
    new_rate: Decimal
    old_rate: Decimal
    ex_date: date
    effective_at: datetime  # when the sim applies it (BOD of the ex-date, or the moment of an immediate split)
    applied: bool = False
    cash_in_lieu: Decimal = Decimal(0)
    orders_rebased: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> Decimal:
        return self.new_rate / self.old_rate

    @property
    def kind(self) -> str:
        return FORWARD_SPLIT if self.ratio > 1 else REVERSE_SPLIT


@dataclass
class SimNameChange:
    """A symbol change: applied at once (`Market.rename`), listed by `GET /v1/corporate-actions` from
    `published_at` on (Alpaca publishes corporate actions after the fact)."""

    id: str
    old_symbol: str
    new_symbol: str
    old_cusip: str
    new_cusip: str
    process_date: date
    published_at: datetime


def beginning_of_day(day: date) -> datetime:
    return datetime.combine(day, BEGINNING_OF_DAY, tzinfo=NEW_YORK).astimezone(UTC)


def to_tick(price: Decimal) -> Decimal:
    """Alpaca's tick: a cent at or above $1, 1/100 cent below."""
    return price.quantize(CENT if price >= 1 else SUB_DOLLAR_TICK, rounding=ROUND_HALF_UP)


def parse_rates(new_rate: object, old_rate: object) -> tuple[Decimal, Decimal]:
    try:
        new, old = Decimal(str(new_rate)), Decimal(str(old_rate))
    except ArithmeticError:
        raise ValueError(f"split rates must be numbers, got new_rate={new_rate!r} old_rate={old_rate!r}") from None
    if not (new.is_finite() and old.is_finite() and new > 0 and old > 0):
        raise ValueError(f"split rates must be positive numbers, got new_rate={new_rate} old_rate={old_rate}")
    if new == old:
        raise ValueError("a split needs new_rate != old_rate")
    return new, old


class CorporateActionLedger:
    """Every split announced to the sim, in announcement order; ids and CUSIPs from a seeded generator."""

    def __init__(self, seed: int) -> None:
        self._ids = random.Random(f"corporate-actions-{seed}")
        self.splits: list[SimSplit] = []
        self.name_changes: list[SimNameChange] = []

    def announce(
        self, symbol: str, new_rate: Decimal, old_rate: Decimal, ex_date: date, effective_at: datetime
    ) -> SimSplit:
        split = SimSplit(
            id=str(uuid.UUID(int=self._ids.getrandbits(128), version=4)),
            symbol=symbol,
            cusip=f"{self._ids.getrandbits(36):09X}"[:9],
            new_rate=new_rate,
            old_rate=old_rate,
            ex_date=ex_date,
            effective_at=effective_at,
        )
        self.splits.append(split)
        return split

    def announce_name_change(self, old: str, new: str, process_date: date, published_at: datetime) -> SimNameChange:
        cusip = f"{self._ids.getrandbits(36):09X}"[:9]
        change = SimNameChange(
            id=str(uuid.UUID(int=self._ids.getrandbits(128), version=4)),
            old_symbol=old,
            new_symbol=new,
            old_cusip=cusip,
            new_cusip=cusip[:-1] + ("1" if cusip[-1] != "1" else "2"),
            process_date=process_date,
            published_at=published_at,
        )
        self.name_changes.append(change)
        return change

    def due(self, until: datetime) -> list[SimSplit]:
        """Splits not applied yet whose moment has come, oldest first."""
        return sorted((s for s in self.splits if not s.applied and s.effective_at <= until), key=_order)

    def next_due_at(self) -> datetime | None:
        pending = [s.effective_at for s in self.splits if not s.applied]
        return min(pending) if pending else None


def _order(split: SimSplit) -> tuple[datetime, str]:
    return split.effective_at, split.id


def rebase_position(position: SimPosition, ratio: Decimal, price: Decimal) -> Decimal:
    """Quantity × ratio and average price ÷ ratio; returns the cash in lieu paid for a whole-share position's
    fraction (at the re-based price `price`)."""
    old_qty = position.qty
    exact = old_qty * ratio
    whole_shares = old_qty == old_qty.to_integral_value()
    new_qty = exact.to_integral_value(rounding=ROUND_FLOOR) if whole_shares and exact > 0 else exact
    if whole_shares and exact < 0:  # a short: round towards zero too
        new_qty = -((-exact).to_integral_value(rounding=ROUND_FLOOR))
    position.avg_entry_price = (position.avg_entry_price / ratio).quantize(_AVG_PRICE_PLACES)
    position.qty = new_qty
    return ((exact - new_qty) * price).quantize(CENT, rounding=ROUND_HALF_UP)


def is_group_order(order: SimOrder) -> bool:
    """A bracket, OCO or OTO order or leg: Alpaca's DNR/DNC group, never touched by a corporate action."""
    return order.order_class in ("bracket", "oco", "oto") or order.parent_id is not None or bool(order.leg_ids)


def rebase_order(order: SimOrder, ratio: Decimal, now: datetime) -> None:
    """A resting non-group order after a split: the same dollar amount at the new share count and prices."""
    exact = order.qty * ratio
    if order.qty == order.qty.to_integral_value():
        exact = exact.to_integral_value(rounding=ROUND_FLOOR)
    order.qty = max(exact, Decimal(1)) if order.qty >= 1 else exact
    if order.limit_price is not None:
        order.limit_price = to_tick(order.limit_price / ratio)
    if order.stop_price is not None:
        order.stop_price = to_tick(order.stop_price / ratio)
    order.updated_at = now


def apply_split(split: SimSplit, *, prices: PriceModel, book: OrderBook, index: int, now: datetime) -> None:
    """Re-base the market, the position and the open orders of `split.symbol` (see the module docstring)."""
    ratio = split.ratio
    prices.rebase(index, float(ratio), now)
    position = book.positions.get(split.symbol)
    if position is not None:
        price = Decimal(repr(float(round_to_tick(prices.mid[index : index + 1])[0])))
        split.cash_in_lieu = rebase_position(position, ratio, price)
        book.cash += split.cash_in_lieu
    for order in book.orders.values():
        if order.symbol == split.symbol and order.is_open and not is_group_order(order):
            rebase_order(order, ratio, now)
            split.orders_rebased.append(order.id)
    split.applied = True
