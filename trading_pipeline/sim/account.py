"""The simulated account's records: orders, positions and the values the account is reported with.

Plain data shared by the order book (`orders.py`), matching (`fills.py`) and Alpaca's JSON (`wire.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from trading_pipeline.sim.universe import SimAsset

TERMINAL_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
WORKING_STATUSES = frozenset({"new", "accepted", "partially_filled"})
STOP_TYPES = frozenset({"stop", "stop_limit"})


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
    # PATCH /v2/orders/{id} (`replace.py`): the order this one replaces, and the one that replaced it.
    replaces: str | None = None
    replaced_by: str | None = None
    replaced_at: datetime | None = None
    # While `pending_cancel`: how many more reads still show it pending (see OrderBook.cancel_delay_lookups).
    cancel_reads_left: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        return not self.is_terminal

    @property
    def is_held_stop_leg(self) -> bool:
        """A bracket's or an OCO's stop-loss leg: Alpaca keeps it on its own side, reported `held`, until the
        stop is crossed; the take-profit leg is routed (`new`). Alpaca's forum, "Bracket Order Exit Trades
        Not Executing" (forum.alpaca.markets/t/3697): "once the parent order completely fills ... the take
        profit limit order leg is set to new and the stop loss leg remains held"."""
        return self.parent_id is not None and self.order_class in ("bracket", "oco") and self.type in STOP_TYPES


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
