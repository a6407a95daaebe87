"""`PATCH /v2/orders/{order_id}`: replace an open order, as Alpaca's OpenAPI spec describes it.

oas/trading/openapi.yaml, patchOrderByOrderId: "Replaces a single order with updated parameters. Each parameter
overrides the corresponding attribute of the existing order. The other attributes remain the same as the
existing order." — the answer is "The new Order object with the new order ID". The request body is
`PatchOrderRequest` (qty, time_in_force, limit_price, stop_price, trail, client_order_id). The `Order` schema
links the two: the new order's `replaces` is the old id; the old one's `replaced_by` the new id, its
`replaced_at` the moment, and its status `replaced` (orders guide, content/trading/orders.md: "The order was
replaced by another order").

What the simulator models:
- A bracket's or an OCO's leg (held or new) is replaced by a new leg of the same parent: the parent's legs list
  the new one in the old one's place (a `nested=true` listing shows it, not the old), in the same
  one-cancels-other group; the old leg stops working in the same instant, so two stop legs never work at once.
  The orders guide allows this for brackets and OCO ("order replacement is supported to update `limit_price`
  and `stop_price`"), not for OTO ("order replacement is not supported yet"), and not for trailing stops.
- Refusals: an order that is no longer open (filled, canceled, expired, replaced) or whose cancel is pending is
  a 422 (42210000, `order is already in "<status>" state`, as a cancel answers); an order still queued for
  the next session (`accepted`) is the 422 Alpaca answers as "unable to replace order, order isn't sent to
  exchange yet" (reported in alpacahq/alpaca-trade-api-python#306); a request that changes nothing is Alpaca's
  403 40310000 "order parameters are not changed" (alpacahq/alpaca-trade-api-js#123); `limit_price` on an
  order that has none, or `stop_price` on one that has none, is a 422.
- The new order is created with a new id and the same fields otherwise (filled quantity 0); a replaced qty
  of a closing order is checked against what the position has free, counting what the old order held; an
  opening order's new value against the buying power, counting the old one's (the spec: "buying power is
  reduced by the larger of the two orders"). The swap is instant: no `pending_replace` is shown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from trading_pipeline.sim.account import STOP_TYPES, SimOrder
from trading_pipeline.sim.errors import CODE_FORBIDDEN, SimApiError, invalid, unprocessable
from trading_pipeline.sim.order_checks import CENT, OPENING_INTENTS, insufficient_qty, order_value
from trading_pipeline.sim.order_requests import _choice, _decimal, _positive
from trading_pipeline.sim.orders import GTC_LIFETIME, OrderBook

REPLACEABLE_FIELDS = ("qty", "time_in_force", "limit_price", "stop_price", "trail", "client_order_id")
REPLACE_TIMES_IN_FORCE = ("day", "gtc")


def replace_order(book: OrderBook, order_id: str, payload: Any) -> SimOrder:
    """Replace `order_id` with a new order carrying the changes in `payload`; return the new order."""
    if payload is not None and not isinstance(payload, Mapping):
        raise invalid("request body must be a JSON object")
    changes: Mapping[str, Any] = payload or {}
    old = book.order(order_id)
    _check_replaceable(book, old)
    qty = _decimal(changes, "qty")
    limit_price = _decimal(changes, "limit_price")
    stop_price = _decimal(changes, "stop_price")
    for value, label in ((qty, "qty"), (limit_price, "limit_price"), (stop_price, "stop_price")):
        _positive(value, label)
    if changes.get("trail") not in (None, ""):
        raise unprocessable("trail can only be replaced on trailing_stop orders")
    if limit_price is not None and old.type not in ("limit", "stop_limit"):
        raise unprocessable(f"limit_price cannot be replaced on a {old.type} order")
    if stop_price is not None and old.type not in STOP_TYPES:
        raise unprocessable(f"stop_price cannot be replaced on a {old.type} order")
    tif = old.time_in_force
    if changes.get("time_in_force") not in (None, ""):
        tif = _choice(changes, "time_in_force", REPLACE_TIMES_IN_FORCE)
    client_order_id = changes.get("client_order_id") or None
    if client_order_id is not None and client_order_id in book.client_order_ids():
        raise invalid("client_order_id must be unique")
    remaining = old.qty - old.filled_qty
    new_qty = qty if qty is not None else remaining
    unchanged = (
        new_qty == remaining
        and (limit_price is None or limit_price == old.limit_price)
        and (stop_price is None or stop_price == old.stop_price)
        and tif == old.time_in_force
    )
    if unchanged and client_order_id is None:
        raise SimApiError(403, "order parameters are not changed", CODE_FORBIDDEN)
    if old.position_intent in ("sell_to_close", "buy_to_close") and old.parent_id is None:
        position = book.positions.get(old.symbol)
        free = book.qty_available(old.symbol) + (remaining if book.commits_shares(old) else Decimal(0))
        if position is not None and new_qty > free:
            raise insufficient_qty(book, old.symbol, new_qty)
    if old.position_intent in OPENING_INTENTS:
        _check_power(book, old, new_qty, limit_price, stop_price)
    return _swap(book, old, new_qty, limit_price, stop_price, tif, client_order_id)


def _check_power(
    book: OrderBook, old: SimOrder, qty: Decimal, limit_price: Decimal | None, stop_price: Decimal | None
) -> None:
    """The spec: "While an order is being replaced, buying power is reduced by the larger of the two orders" —
    an opening order replaced by a costlier one needs the difference in buying power (the old one's value is
    already held)."""
    limit = limit_price if limit_price is not None else old.limit_price
    stop = stop_price if stop_price is not None else old.stop_price
    held = old.qty - old.filled_qty
    before = order_value(book.market, old.symbol, old.side, held, old.limit_price, old.stop_price)
    after = order_value(book.market, old.symbol, old.side, qty, limit, stop)
    buying_power = book.account_values().buying_power
    if after - before > buying_power:
        raise SimApiError(
            403,
            "insufficient buying power",
            CODE_FORBIDDEN,
            buying_power=str(buying_power),
            cost_basis=str(after.quantize(CENT)),
        )


def _check_replaceable(book: OrderBook, old: SimOrder) -> None:
    if old.is_terminal or old.status == "pending_cancel":
        raise unprocessable(f'order is already in "{old.status}" state')
    if old.status == "accepted":
        raise unprocessable("unable to replace order, order isn't sent to exchange yet")
    parent = book.orders.get(old.parent_id) if old.parent_id is not None else None
    if old.order_class == "oto" and (parent is not None or old.leg_ids):
        raise unprocessable("replacement of oto orders is not supported")


def _swap(
    book: OrderBook,
    old: SimOrder,
    qty: Decimal,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
    tif: str,
    client_order_id: str | None,
) -> SimOrder:
    now = book.market.now
    new = dataclasses.replace(
        old,
        id=book.new_id(),
        client_order_id=client_order_id or book.new_id(),
        qty=qty,
        limit_price=limit_price if limit_price is not None else old.limit_price,
        stop_price=stop_price if stop_price is not None else old.stop_price,
        time_in_force=tif,
        created_at=now,
        updated_at=now,
        submitted_at=now,
        filled_at=None,
        filled_qty=Decimal(0),
        filled_avg_price=None,
        leg_ids=list(old.leg_ids),
        triggered=False,
        replaces=old.id,
        replaced_by=None,
        replaced_at=None,
    )
    if tif != old.time_in_force:
        new.expires_at = book.market.day_order_expiry() if tif == "day" else now + GTC_LIFETIME
    old.status = "replaced"
    old.replaced_by = new.id
    old.replaced_at = now
    old.updated_at = now
    book.adopt_replacement(old, new)
    return new
