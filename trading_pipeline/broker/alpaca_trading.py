"""Alpaca's trading API (reference data, account, positions, orders) through alpaca-py's TradingClient.

Order submits are idempotent: every order carries a client_order_id; an ambiguous outcome (timeout, 5xx,
lost response) is resolved by looking that id up, and the order is sent again only when the lookup proves
it does not exist; a duplicate-id 422 means "already submitted" and returns that order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from alpaca.trading import requests as sdk_requests
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetClass, AssetStatus, QueryOrderStatus

from trading_pipeline.broker.alpaca_calls import AlpacaCalls, describe, error_for, unexpected
from trading_pipeline.broker.alpaca_models import (
    decimal_or_none,
    enum_value,
    money,
    new_york_wall_time,
    sdk_order_request,
    to_broker_order,
    utc,
)
from trading_pipeline.broker.base import (
    Account,
    Asset,
    BrokerError,
    BrokerOrder,
    BrokerPosition,
    BrokerUnavailable,
    MarketClock,
    NotFound,
    OrderRejected,
    OrderRequest,
    OrderType,
    TradingSession,
)
from trading_pipeline.broker.rate_limit import Priority, spending
from trading_pipeline.broker.sdk import Failure, error_details
from trading_pipeline.domain.ids import parse_client_order_id
from trading_pipeline.domain.types import OrderAction, PositionSide

log = logging.getLogger("trading_pipeline.broker.alpaca")

# After a market order is accepted, look it up for this long to report its fill (Alpaca fills in ms).
DEFAULT_FILL_WAIT_SECONDS = 1.0
DUPLICATE_CLIENT_ORDER_ID = "client_order_id must be unique"
# "accepted" is not here: Alpaca uses it for orders queued out of hours, which no short wait will fill.
_POLLABLE_STATUSES = frozenset({"new", "pending_new", "partially_filled"})


class TradingCalls(AlpacaCalls):
    """The trading half of `AlpacaBroker`."""

    _trading: TradingClient
    fill_wait_seconds: float

    # ---- reference data, account, positions -----------------------------------------------------------

    def active_assets(self) -> list[Asset]:
        request = sdk_requests.GetAssetsRequest(status=AssetStatus.ACTIVE, asset_class=AssetClass.US_EQUITY)
        assets = self._call("active_assets", lambda: self._trading.get_all_assets(request))
        found = [
            Asset(
                symbol=a.symbol,
                name=a.name or "",
                exchange=enum_value(a.exchange),
                tradable=bool(a.tradable),
                status=enum_value(a.status),
            )
            for a in assets
            if a.tradable and enum_value(a.status) == "active"
        ]
        return sorted(found, key=lambda asset: asset.symbol)

    def clock(self) -> MarketClock:
        c = self._call("clock", self._trading.get_clock)
        return MarketClock(
            timestamp=utc(c.timestamp),
            is_open=bool(c.is_open),
            next_open=utc(c.next_open),
            next_close=utc(c.next_close),
        )

    def calendar(self, start: date, end: date) -> list[TradingSession]:
        request = sdk_requests.GetCalendarRequest(start=start, end=end)
        days = self._call("calendar", lambda: self._trading.get_calendar(request))
        # alpaca-py parses "09:30"/"16:00" into naive datetimes: they are New York wall-clock times.
        return [
            TradingSession(day=d.date, open=new_york_wall_time(d.open), close=new_york_wall_time(d.close)) for d in days
        ]

    def account(self) -> Account:
        a = self._call("account", self._trading.get_account)
        return Account(
            status=enum_value(a.status),
            buying_power=money(a.buying_power, "buying_power") or Decimal(0),
            cash=money(a.cash, "cash") or Decimal(0),
            equity=money(a.equity, "equity") or Decimal(0),
            trading_blocked=bool(a.trading_blocked),
            account_blocked=bool(a.account_blocked),
            currency=a.currency or "USD",
        )

    def positions(self) -> list[BrokerPosition]:
        positions = self._call("positions", self._trading.get_all_positions)
        return [_position(p) for p in positions]

    def position(self, symbol: str) -> BrokerPosition | None:
        """One position (`GET /v2/positions/{symbol}`), or None when the broker holds none (404)."""
        try:
            found = self._call("position", lambda: self._trading.get_open_position(symbol))
        except NotFound:
            return None
        return _position(found)

    # ---- orders ---------------------------------------------------------------------------------------

    def order_by_client_order_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client_order_id, or None when the broker has none (404)."""
        try:
            order = self._call(
                "order_by_client_order_id", lambda: self._trading.get_order_by_client_id(client_order_id)
            )
        except NotFound:
            return None
        return to_broker_order(order)

    def order_by_id(self, order_id: str) -> BrokerOrder | None:
        """The order with its legs rolled up (`GET /v2/orders/{id}?nested=true`): how a bracket's legs are
        found once the parent has filled and a `status=open` listing no longer shows them. None on 404."""
        request = sdk_requests.GetOrderByIdRequest(nested=True)
        try:
            order = self._call("order_by_id", lambda: self._trading.get_order_by_id(order_id, filter=request))
        except NotFound:
            return None
        return to_broker_order(order)

    def open_orders(self, symbols: Iterable[str] | None = None) -> list[BrokerOrder]:
        wanted = None if symbols is None else sorted(set(symbols))
        if wanted == []:
            return []
        request = sdk_requests.GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500, nested=True, symbols=wanted)
        orders = self._call("open_orders", lambda: self._trading.get_orders(request))
        return [to_broker_order(o) for o in orders]

    def closed_orders(self, symbols: Iterable[str], after: datetime) -> list[BrokerOrder]:
        """Orders for `symbols` that ended after `after`, with their legs (how a broker-side stop is found)."""
        wanted = sorted(set(symbols))
        if not wanted:
            return []
        request = sdk_requests.GetOrdersRequest(
            status=QueryOrderStatus.CLOSED, limit=500, nested=True, symbols=wanted, after=after
        )
        orders = self._call("closed_orders", lambda: self._trading.get_orders(request))
        return [to_broker_order(o) for o in orders]

    def all_orders(self, symbols: Iterable[str], after: datetime) -> list[BrokerOrder]:
        """Every order (open or not) for `symbols` submitted after `after`, legs rolled up under their parent
        (`status=all&nested=true`), oldest first, all pages: a filled bracket parent is not in an open listing,
        so this is where its still-working legs are found."""
        wanted = sorted(set(symbols))
        if not wanted:
            return []
        found: dict[str, BrokerOrder] = {}
        cursor = after
        while True:
            request = sdk_requests.GetOrdersRequest(
                status=QueryOrderStatus.ALL, limit=500, nested=True, symbols=wanted, after=cursor, direction="asc"
            )
            page = [to_broker_order(o) for o in self._call("all_orders", lambda r=request: self._trading.get_orders(r))]
            fresh = [o for o in page if o.id not in found]
            found.update((o.id, o) for o in fresh)
            stamps = [o.submitted_at for o in page if o.submitted_at is not None]
            if len(page) < 500 or not fresh or not stamps:
                return list(found.values())
            # `after` is exclusive: step back a microsecond so orders sharing the boundary's time are not lost.
            cursor = max(stamps) - timedelta(microseconds=1)

    def cancel_order(self, order_id: str) -> None:
        """Cancel an open order. Canceling an already canceled order succeeds (a retried DELETE whose first
        attempt went through must not turn into an error); a filled order raises OrderRejected."""
        try:
            self._call("cancel_order", lambda: self._trading.cancel_order_by_id(order_id), order_call=True)
        except OrderRejected as exc:
            if '"canceled"' in exc.message:
                return
            raise

    def replace_stop(self, order_id: str, stop_price: Decimal) -> BrokerOrder:
        """Move a stop (a bracket's stop leg too) to `stop_price` with `PATCH /v2/orders/{order_id}`: Alpaca
        answers the new order (a new id; `replaces` is `order_id`) and the old one becomes `replaced`. A
        protective call: it spends the closes' budget and is retried like a cancel. A retried PATCH whose first
        attempt went through finds the order already `replaced` (422): the answer is then the order that
        replaced it, found through the old one's `replaced_by`."""
        request = sdk_requests.ReplaceOrderRequest(stop_price=float(stop_price))
        try:
            order = self._call(
                "replace_stop", lambda: self._trading.replace_order_by_id(order_id, request), order_call=True
            )
        except OrderRejected as exc:
            if '"replaced"' not in exc.message:
                raise
            replacement = self._replacement_of(order_id)
            if replacement is None:
                raise
            log.info("replace_stop: already replaced, returning the replacement", extra={"order_id": order_id})
            return replacement
        return to_broker_order(order)

    def _replacement_of(self, order_id: str) -> BrokerOrder | None:
        with spending(Priority.CLOSE):
            old = self._call("replace_stop", lambda: self._trading.get_order_by_id(order_id))
            replaced_by = getattr(old, "replaced_by", None)
            if replaced_by is None:
                return None
            new = self._call("replace_stop", lambda: self._trading.get_order_by_id(str(replaced_by)))
        return to_broker_order(new)

    def close_position(self, symbol: str) -> BrokerOrder:
        """Market order closing the whole position. Only a 429 is retried: Alpaca gives the close order no
        client_order_id of ours, so after an ambiguous failure the caller must look at positions/orders."""
        with spending(Priority.CLOSE):
            return self._close_position(symbol)

    def _close_position(self, symbol: str) -> BrokerOrder:
        attempt = 0
        while True:
            attempt += 1
            try:
                order = self._trading.close_position(symbol)
            except BrokerError:
                raise  # RateBudgetExhausted: refused before sending
            except Exception as exc:
                failure = error_details(exc)
                if failure is None:
                    raise unexpected("close_position", exc) from exc
                if not failure.retryable:
                    raise error_for("close_position", failure, order_call=True) from exc
                if failure.ambiguous:
                    raise BrokerUnavailable(
                        f"close_position {symbol}: outcome unknown ({describe(failure)}); check positions and "
                        "open orders before retrying",
                        status=failure.status,
                    ) from exc
                if attempt >= self.retry.max_attempts:
                    raise BrokerUnavailable(
                        f"close_position {symbol}: broker unavailable after {attempt} attempts ({describe(failure)})",
                        status=failure.status,
                    ) from exc
                self._backoff("close_position", attempt, failure)
                continue
            return self._confirm_fill(to_broker_order(order))

    def submit_order(self, request: OrderRequest, *, confirm_fill: bool = True) -> BrokerOrder:
        """Submit once, idempotently by client_order_id (see the module docstring). `confirm_fill`: look a
        market order up briefly to report its fill (False: the caller looks fills up in one listing)."""
        if not request.client_order_id:
            raise OrderRejected("every order needs a client_order_id: it is how a lost response is resolved")
        with spending(order_priority(request)):
            return self._submit_order(request, confirm_fill)

    def _submit_order(self, request: OrderRequest, confirm_fill: bool) -> BrokerOrder:
        confirm = self._confirm_fill if confirm_fill else (lambda order: order)
        sdk_request = sdk_order_request(request)
        cid = request.client_order_id
        attempt = 0
        last: Failure | None = None
        while attempt < self.retry.max_attempts:
            attempt += 1
            try:
                submitted = self._trading.submit_order(sdk_request)
            except BrokerError:
                raise  # RateBudgetExhausted: refused before sending, so no order exists
            except Exception as exc:
                failure = error_details(exc)
                if failure is None:
                    raise unexpected("submit_order", exc) from exc
                if failure.status == 422 and DUPLICATE_CLIENT_ORDER_ID in failure.message.lower():
                    return self._already_submitted(request)
                if not failure.retryable:
                    raise error_for("submit_order", failure, order_call=True) from exc
                last = failure
                if failure.ambiguous:
                    existing = self._resolve_ambiguous_submit(cid, failure)
                    if existing is not None:
                        log.info("ambiguous submit resolved by client_order_id", extra={"client_order_id": cid})
                        return confirm(existing)
                if attempt < self.retry.max_attempts:
                    self._backoff("submit_order", attempt, failure)
                continue
            return confirm(to_broker_order(submitted))
        assert last is not None
        raise BrokerUnavailable(
            f"submit_order {cid}: not accepted after {attempt} attempts ({describe(last)}); the broker has no "
            "order with this client_order_id as of the last lookup",
            status=last.status,
        )

    def _resolve_ambiguous_submit(self, client_order_id: str, failure: Failure) -> BrokerOrder | None:
        try:
            return self.order_by_client_order_id(client_order_id)
        except BrokerError as exc:
            raise BrokerUnavailable(
                f"submit_order {client_order_id}: outcome unknown ({describe(failure)}) and the lookup by "
                f"client_order_id failed ({exc.message}); reconcile by client_order_id before resubmitting",
                status=failure.status,
            ) from exc

    def _already_submitted(self, request: OrderRequest) -> BrokerOrder:
        existing = self.order_by_client_order_id(request.client_order_id)
        if existing is None:
            raise BrokerError(
                f"submit_order {request.client_order_id}: broker says the client_order_id is taken but has no "
                "order for it",
                status=422,
            )
        if existing.symbol != request.symbol or existing.side is not request.side:
            # Same id, different order: never treat someone else's order as ours.
            raise OrderRejected(
                f"client_order_id {request.client_order_id} is already used by a {existing.side.value} "
                f"order for {existing.symbol}",
                status=422,
            )
        log.info(
            "duplicate client_order_id: returning the existing order",
            extra={"client_order_id": request.client_order_id},
        )
        return existing

    def _confirm_fill(self, order: BrokerOrder) -> BrokerOrder:
        """Alpaca answers a submit before the fill; briefly look a market order up to report the fill."""
        if self.fill_wait_seconds <= 0 or order.type is not OrderType.MARKET or order.status not in _POLLABLE_STATUSES:
            return order
        deadline = time.monotonic() + self.fill_wait_seconds
        delay = 0.02
        current = order
        while current.status in _POLLABLE_STATUSES and time.monotonic() < deadline:
            try:
                found = self._trading.get_order_by_client_id(current.client_order_id)
            except Exception:
                return current  # the order exists; its fill is picked up later by client_order_id
            current = to_broker_order(found)
            if current.status not in _POLLABLE_STATUSES:
                break
            self._sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)
        return current


def order_priority(request: OrderRequest) -> Priority:
    """An entry (our id says "open") spends the entries' budget; every other order — a close, a protective
    stop or take-profit, an order whose id is not ours — goes ahead of reconciliation and entries."""
    parsed = parse_client_order_id(request.client_order_id)
    if parsed is not None and parsed[1] is OrderAction.OPEN:
        return Priority.ENTRY
    return Priority.CLOSE


def _position(p: Any) -> BrokerPosition:
    available = getattr(p, "qty_available", None)
    return BrokerPosition(
        symbol=p.symbol,
        side=PositionSide(enum_value(p.side)),
        # Alpaca signs a short's qty ("-10"); the product carries the side separately.
        qty=abs(decimal_or_none(p.qty) or Decimal(0)),
        avg_entry_price=decimal_or_none(p.avg_entry_price) or Decimal(0),
        current_price=decimal_or_none(p.current_price),
        qty_available=None if available in (None, "") else abs(decimal_or_none(available) or Decimal(0)),
    )
