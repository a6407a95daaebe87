"""`GET /v2/orders` as Alpaca answers it: which orders a listing holds, in which order, how many.

From Alpaca's OpenAPI spec (trading.yaml, `getAllOrders`) and the orders guide (trading/orders.md):
- `status` open | closed | all, default open; "open" is every order not yet filled, canceled, expired,
  rejected or replaced (so `held`, `accepted`, `pending_cancel` are open);
- `nested=true` "will roll up multi-leg orders under the legs field of primary order": legs are not listed on
  their own, and a family is selected by its primary order's status. A filled bracket entry — and with it its
  still-working legs — is therefore *not* in `status=open&nested=true`; `status=all&nested=true` shows it
  with its legs. `nested=false` (the default) lists "each order of the group ... as an independent order",
  each by its own status;
- `after` / `until`: submitted after / until that time, both exclusive;
- `direction` asc | desc by submission time, default desc;
- `limit` default 50, max 500; `symbols` a comma-separated filter; `side` buy | sell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from trading_pipeline.sim.account import SimOrder
from trading_pipeline.sim.api import bounded_int, flag, parse_time
from trading_pipeline.sim.errors import invalid

ORDERS_DEFAULT_LIMIT = 50
ORDERS_MAX_LIMIT = 500
STATUSES = ("open", "closed", "all")
DIRECTIONS = ("asc", "desc")
SIDES = ("buy", "sell")


@dataclass(frozen=True)
class OrderQuery:
    status: str = "open"
    limit: int = ORDERS_DEFAULT_LIMIT
    direction: str = "desc"
    nested: bool = False
    symbols: frozenset[str] | None = None
    side: str | None = None
    after: datetime | None = None
    until: datetime | None = None


def parse_order_query(q: Mapping[str, str]) -> OrderQuery:
    """The query string of GET /v2/orders; a value Alpaca would not take is its 422."""
    status = q.get("status") or "open"
    if status not in STATUSES:
        raise invalid(f"invalid status: {status!r}")
    direction = q.get("direction") or "desc"
    if direction not in DIRECTIONS:
        raise invalid(f"invalid direction: {direction!r}")
    side = q.get("side") or None
    if side is not None and side not in SIDES:
        raise invalid(f"invalid side: {side!r}")
    raw_symbols = q.get("symbols")
    symbols = frozenset(s.strip() for s in raw_symbols.split(",") if s.strip()) if raw_symbols else None
    return OrderQuery(
        status=status,
        limit=bounded_int(q, "limit", ORDERS_DEFAULT_LIMIT, 1, ORDERS_MAX_LIMIT, data=False),
        direction=direction,
        nested=flag(q, "nested"),
        symbols=symbols or None,
        side=side,
        after=parse_time(q["after"], name="after") if q.get("after") else None,
        until=parse_time(q["until"], name="until") if q.get("until") else None,
    )


def _by_status(order: SimOrder, status: str) -> bool:
    if status == "open":
        return order.is_open
    if status == "closed":
        return order.is_terminal
    return True


def _submitted(order: SimOrder) -> datetime:
    return order.submitted_at or order.created_at


def select_orders(orders: list[SimOrder], query: OrderQuery) -> list[SimOrder]:
    """The orders of one listing page, in the listing's order. `orders` in submission order (the book's)."""
    selected: list[SimOrder] = []
    for order in orders:
        if query.nested and order.parent_id is not None:
            continue  # rolled up under its primary order
        submitted = _submitted(order)
        if query.after is not None and submitted <= query.after:
            continue
        if query.until is not None and submitted >= query.until:
            continue
        if query.symbols is not None and order.symbol not in query.symbols:
            continue
        if query.side is not None and order.side != query.side:
            continue
        if _by_status(order, query.status):
            selected.append(order)
    # A stable sort: orders submitted at the same instant (a parent and its legs) keep the book's order.
    selected.sort(key=_submitted, reverse=query.direction == "desc")
    return selected[: query.limit]
