"""What the broker holds and which orders exist, read once per run: the truth a close is sized against.

Positions come from one `GET /v2/positions`; when that fails, one `GET /v2/positions/{symbol}` per symbol to
close, so a listing outage never blocks a stop-loss. A symbol to close that the listing lacks is confirmed the
same way: a listing that answers 200 with nothing (or with another account's book) must not read as "the
broker holds none" and so skip a stop. Open orders come from one nested listing of the symbols to close.
Anything that cannot be read is left unknown (None); the close step then sizes it to the DB's quantity.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from trading_pipeline.broker.base import Broker, BrokerError, BrokerOrder, BrokerPosition
from trading_pipeline.domain.ids import parse_client_order_id
from trading_pipeline.domain.types import OrderSide, signed_qty

log = logging.getLogger(__name__)


@dataclass
class BrokerBook:
    broker: Broker
    positions: dict[str, BrokerPosition | None] = field(default_factory=dict)  # None: the broker holds none
    unknown: dict[str, str] = field(default_factory=dict)  # symbol → why its position could not be read
    orders: dict[str, list[BrokerOrder]] | None = None  # open orders with their legs, by symbol; None: unread
    ours: set[str] = field(default_factory=set)  # broker ids of orders the pipeline sent (and their legs)
    problems: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, broker: Broker, symbols: Iterable[str]) -> BrokerBook:
        wanted = sorted(set(symbols))
        book = cls(broker)
        if not wanted:
            return book
        try:
            held = {p.symbol: p for p in broker.positions()}
            book.positions = {s: held.get(s) for s in wanted}
            for symbol in (s for s in wanted if s not in held):
                book.refresh(symbol)  # one request per symbol the listing lacks: none in a run that agrees
        except BrokerError as exc:
            book.problems["(positions)"] = f"positions listing failed, read symbol by symbol: {exc}"
            for symbol in wanted:
                book.refresh(symbol)
        try:
            book.orders = {}
            for order in broker.open_orders(wanted):
                book.add_order(order)
        except BrokerError as exc:
            book.orders = None
            book.problems["(open orders)"] = f"open-orders listing failed: {exc}"
        return book

    def add_order(self, order: BrokerOrder) -> None:
        """One listed order (with the legs Alpaca rolls up under it), filed by symbol."""
        assert self.orders is not None
        mine = parse_client_order_id(order.client_order_id) is not None
        for each in order.with_legs():
            self.orders.setdefault(each.symbol, []).append(each)
            if mine:  # a bracket's legs get broker-made ids; they are ours because their parent is
                self.ours.add(each.id)

    def refresh(self, symbol: str) -> None:
        """Re-read one symbol's position (after an outside order filled, or when the listing failed)."""
        try:
            self.positions[symbol] = self.broker.position(symbol)
            self.unknown.pop(symbol, None)
        except BrokerError as exc:
            self.unknown[symbol] = f"position of {symbol} unreadable: {exc}"
            self.positions.pop(symbol, None)

    def held(self, symbol: str) -> Decimal | None:
        """Signed shares the broker holds (0 when none), or None when the broker could not be read."""
        if symbol in self.unknown or symbol not in self.positions:
            return None
        position = self.positions[symbol]
        return Decimal(0) if position is None else signed_qty(position.qty, position.side)

    def take(self, symbol: str, qty: Decimal) -> None:
        """Shares just sent to close: the next trade in the same symbol may only use what is left."""
        position = self.positions.get(symbol)
        if position is not None:
            left = max(Decimal(0), position.qty - abs(qty))
            self.positions[symbol] = BrokerPosition(
                symbol, position.side, left, position.avg_entry_price, position.current_price, left
            )

    def holding_orders(self, symbol: str, side: OrderSide) -> list[BrokerOrder] | None:
        """Open orders on `symbol` of the closing side with shares left to fill: they hold the quantity a close
        needs (Alpaca refuses the close with 403 "insufficient qty available" until they are cancelled)."""
        if self.orders is None:
            return None
        return [
            o
            for o in self.orders.get(symbol, [])
            if o.side is side and o.is_open and o.remaining_qty > 0 and not o.is_terminal
        ]

    def is_ours(self, order: BrokerOrder) -> bool:
        return order.id in self.ours or parse_client_order_id(order.client_order_id) is not None
