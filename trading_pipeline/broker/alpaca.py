"""AlpacaBroker: the `Broker` protocol on alpaca-py's own TradingClient and StockHistoricalDataClient.

The same code talks to Alpaca (paper or live) and to the local simulator (`trading_pipeline.sim`): only
the host roots differ, passed to the SDK as `url_override`. What this adapter adds to the SDK:

- every request has a timeout, and the SDK's own retry is off (see `sdk.py` for why);
- retries with exponential backoff + jitter on 429/5xx/timeouts/connection errors, honouring
  Retry-After, bounded by `RetryPolicy.max_attempts`, then `BrokerUnavailable`;
- order submits are idempotent: every order carries a client_order_id; an ambiguous outcome (timeout,
  5xx, lost response) is resolved by looking that id up, and the order is sent again only when the
  lookup proves it does not exist; a duplicate-id 422 means "already submitted" and returns that order;
- latest quotes are deduplicated, validated (malformed symbols are reported, never sent: one would fail
  the whole request with 400) and fetched in chunks of `QUOTE_CHUNK_SIZE` symbols, one request each;
- SDK models become the product's types (Decimal, tz-aware UTC datetimes, enums); `BrokerOrder.raw` is
  JSON-safe. Keys never appear in reprs, logs or error messages.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest, StockLatestQuoteRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading import requests as sdk_requests
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetClass, AssetStatus, QueryOrderStatus
from alpaca.trading.models import Order as SdkOrder
from pydantic import ValidationError

from trading_pipeline.broker.base import (
    Account,
    Asset,
    Bar,
    BrokerError,
    BrokerOrder,
    BrokerPosition,
    BrokerUnavailable,
    ConfigurationError,
    MarketClock,
    NotFound,
    OrderClass,
    OrderRejected,
    OrderRequest,
    OrderType,
    QuoteBatch,
    TimeInForce,
    TradingSession,
)
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.broker.sdk import Failure, error_details, harden_client
from trading_pipeline.broker.symbols import split_symbols
from trading_pipeline.domain.jsonsafe import to_jsonable
from trading_pipeline.domain.types import OrderSide, PositionSide, Quote
from trading_pipeline.settings import Settings, TradingMode

log = logging.getLogger(__name__)

# Symbols per latest-quotes request. Alpaca documents no maximum, but the symbols travel in the URL:
# 500 symbols of up to 10 characters keep the request line under ~6 KB, below the 8 KB limit common to
# proxies and load balancers, while 5,000 symbols still take only 10 requests.
QUOTE_CHUNK_SIZE = 500
# Symbols per daily-bars call (the SDK then follows next_page_token itself).
BARS_CHUNK_SIZE = 500
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_FEED = "iex"
# After a market order is accepted, look it up for this long to report its fill (Alpaca fills in ms).
DEFAULT_FILL_WAIT_SECONDS = 1.0
NEW_YORK = ZoneInfo("America/New_York")
DUPLICATE_CLIENT_ORDER_ID = "client_order_id must be unique"
# "accepted" is not here: Alpaca uses it for orders queued out of hours, which no short wait will fill.
_POLLABLE_STATUSES = frozenset({"new", "pending_new", "partially_filled"})

T = TypeVar("T")


@dataclass
class _Attempts:
    """How many HTTP requests a broker method made, retries included (the batching budget)."""

    count: int = 0


class AlpacaBroker:
    """The product's broker on alpaca-py. Thread-safe as far as requests.Session is (one per client)."""

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        trading_url: str | None = None,
        data_url: str | None = None,
        paper: bool = True,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        quote_chunk_size: int = QUOTE_CHUNK_SIZE,
        feed: str = DEFAULT_FEED,
        fill_wait_seconds: float = DEFAULT_FILL_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        jitter: random.Random | None = None,
    ) -> None:
        if not api_key or not secret_key:
            raise ConfigurationError(
                "Alpaca keys are missing: set ALPACA_API_KEY and ALPACA_SECRET_KEY "
                "(for the local sim broker any non-empty values work)"
            )
        if timeout <= 0:
            raise ValueError(f"timeout must be above 0 seconds, got {timeout}")
        if quote_chunk_size < 1:
            raise ValueError(f"quote_chunk_size must be at least 1, got {quote_chunk_size}")
        self.trading_url = _strip_root(trading_url)
        self.data_url = _strip_root(data_url)
        self.paper = paper
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.quote_chunk_size = quote_chunk_size
        self.feed = feed
        self.fill_wait_seconds = fill_wait_seconds
        self._sleep = sleep
        self._jitter = jitter or random.Random()
        self._trading = TradingClient(api_key, secret_key, paper=paper, url_override=self.trading_url)
        self._data = StockHistoricalDataClient(api_key, secret_key, url_override=self.data_url)
        harden_client(self._trading, timeout)
        harden_client(self._data, timeout)

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] | None = None, **options: Any
    ) -> AlpacaBroker:
        """Keys from ALPACA_API_KEY / ALPACA_SECRET_KEY; URLs and paper/live from `settings`."""
        env = os.environ if environ is None else environ
        missing = [name for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY") if not env.get(name, "").strip()]
        if missing:
            raise ConfigurationError(
                f"TRADING_PIPELINE_BROKER=alpaca needs {' and '.join(missing)}: set "
                f"{'them' if len(missing) > 1 else 'it'} to your Alpaca key id / secret (paper keys for "
                "TRADING_MODE=paper), or to any non-empty value when ALPACA_TRADING_URL points at the "
                "local sim broker"
            )
        return cls(
            env["ALPACA_API_KEY"].strip(),
            env["ALPACA_SECRET_KEY"].strip(),
            trading_url=settings.alpaca_trading_url,
            data_url=settings.alpaca_data_url,
            paper=settings.trading_mode is TradingMode.PAPER,
            **options,
        )

    def close(self) -> None:
        """Release pooled HTTP connections (the Dagster resource calls this at teardown)."""
        for client in (self._trading, self._data):
            client._session.close()

    def __repr__(self) -> str:
        trading = self.trading_url or ("paper-api.alpaca.markets" if self.paper else "api.alpaca.markets")
        return (
            f"AlpacaBroker(trading={trading!r}, data={self.data_url or 'data.alpaca.markets'!r}, "
            f"paper={self.paper}, timeout={self.timeout})"
        )

    # ---- the retry loop -------------------------------------------------------------------------------

    def _call(
        self, operation: str, fn: Callable[[], T], attempts: _Attempts | None = None, *, order_call: bool = False
    ) -> T:
        """Run one SDK call with retries; map failures to the product's errors."""
        tries = attempts or _Attempts()
        first = tries.count
        while True:
            tries.count += 1
            try:
                return fn()
            except Exception as exc:
                failure = error_details(exc)
                if failure is None:
                    raise _unexpected(operation, exc) from exc
                made = tries.count - first
                if not failure.retryable:
                    raise _error_for(operation, failure, order_call=order_call) from exc
                if made >= self.retry.max_attempts:
                    raise BrokerUnavailable(
                        f"{operation}: broker unavailable after {made} attempts ({_describe(failure)})",
                        status=failure.status,
                    ) from exc
                self._backoff(operation, made, failure)

    def _backoff(self, operation: str, attempt: int, failure: Failure) -> None:
        delay = self.retry.delay(attempt, failure.retry_after, self._jitter)
        log.warning(
            "broker call %s failed (%s), attempt %d; retrying in %.2fs",
            operation,
            _describe(failure),
            attempt,
            delay,
            extra={"operation": operation, "attempt": attempt, "status": failure.status, "delay_s": round(delay, 3)},
        )
        self._sleep(delay)

    # ---- market data ----------------------------------------------------------------------------------

    def latest_quotes(self, symbols: Iterable[str]) -> QuoteBatch:
        valid, rejected = split_symbols(symbols)
        attempts = _Attempts()
        quotes: dict[str, Quote] = {}
        unusable: set[str] = set()
        for start in range(0, len(valid), self.quote_chunk_size):
            chunk = valid[start : start + self.quote_chunk_size]
            request = StockLatestQuoteRequest(symbol_or_symbols=chunk, feed=self.feed)
            raw = self._call(
                "latest_quotes", lambda request=request: self._data.get_stock_latest_quote(request), attempts
            )
            asked = set(chunk)
            for symbol, sdk_quote in raw.items():
                if symbol not in asked:
                    continue  # not requested: not ours to judge or store (a proxy's cache, a broker bug)
                quote = _quote(symbol, sdk_quote)
                if quote is None:
                    unusable.add(symbol)
                else:
                    quotes[symbol] = quote
        missing = frozenset(s for s in valid if s not in quotes)
        if unusable:
            log.warning("quotes without a usable price treated as missing", extra={"symbols": sorted(unusable)})
        return QuoteBatch(quotes=quotes, missing=missing, rejected=rejected, requests=attempts.count)

    def daily_bars(self, symbols: Iterable[str], start: date, end: date) -> list[Bar]:
        valid, rejected = split_symbols(symbols)
        if rejected:
            raise ValueError(f"malformed symbols, not sent: {rejected}")
        bars: list[Bar] = []
        for offset in range(0, len(valid), BARS_CHUNK_SIZE):
            chunk = valid[offset : offset + BARS_CHUNK_SIZE]
            request = StockBarsRequest(
                symbol_or_symbols=chunk,
                timeframe=TimeFrame.Day,
                # Daily bars are stamped at midnight New York: this window includes both end dates.
                start=datetime(start.year, start.month, start.day, tzinfo=NEW_YORK),
                end=datetime(end.year, end.month, end.day, tzinfo=NEW_YORK),
                feed=self.feed,
            )
            bar_set = self._call("daily_bars", lambda request=request: self._data.get_stock_bars(request))
            for symbol, items in bar_set.data.items():
                bars.extend(_bar(symbol, item) for item in items)
        bars.sort(key=lambda bar: (bar.symbol, bar.timestamp))
        return bars

    # ---- trading: reference data ----------------------------------------------------------------------

    def active_assets(self) -> list[Asset]:
        request = sdk_requests.GetAssetsRequest(status=AssetStatus.ACTIVE, asset_class=AssetClass.US_EQUITY)
        assets = self._call("active_assets", lambda: self._trading.get_all_assets(request))
        found = [
            Asset(
                symbol=a.symbol,
                name=a.name or "",
                exchange=_value(a.exchange),
                tradable=bool(a.tradable),
                status=_value(a.status),
            )
            for a in assets
            if a.tradable and _value(a.status) == "active"
        ]
        return sorted(found, key=lambda asset: asset.symbol)

    def clock(self) -> MarketClock:
        c = self._call("clock", self._trading.get_clock)
        return MarketClock(
            timestamp=_utc(c.timestamp),
            is_open=bool(c.is_open),
            next_open=_utc(c.next_open),
            next_close=_utc(c.next_close),
        )

    def calendar(self, start: date, end: date) -> list[TradingSession]:
        request = sdk_requests.GetCalendarRequest(start=start, end=end)
        days = self._call("calendar", lambda: self._trading.get_calendar(request))
        # alpaca-py parses "09:30"/"16:00" into naive datetimes: they are New York wall-clock times.
        return [TradingSession(day=d.date, open=_new_york(d.open), close=_new_york(d.close)) for d in days]

    def account(self) -> Account:
        a = self._call("account", self._trading.get_account)
        return Account(
            status=_value(a.status),
            buying_power=_money(a.buying_power, "buying_power") or Decimal(0),
            cash=_money(a.cash, "cash") or Decimal(0),
            equity=_money(a.equity, "equity") or Decimal(0),
            trading_blocked=bool(a.trading_blocked),
            account_blocked=bool(a.account_blocked),
            currency=a.currency or "USD",
        )

    def positions(self) -> list[BrokerPosition]:
        positions = self._call("positions", self._trading.get_all_positions)
        return [
            BrokerPosition(
                symbol=p.symbol,
                side=PositionSide(_value(p.side)),
                # Alpaca signs a short's qty ("-10"); the product carries the side separately.
                qty=abs(_decimal(p.qty) or Decimal(0)),
                avg_entry_price=_decimal(p.avg_entry_price) or Decimal(0),
                current_price=_decimal(p.current_price),
            )
            for p in positions
        ]

    # ---- trading: orders ------------------------------------------------------------------------------

    def order_by_client_order_id(self, client_order_id: str) -> BrokerOrder | None:
        """The order with this client_order_id, or None when the broker has none (404)."""
        try:
            order = self._call(
                "order_by_client_order_id", lambda: self._trading.get_order_by_client_id(client_order_id)
            )
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

    def cancel_order(self, order_id: str) -> None:
        """Cancel an open order. Canceling an already canceled order succeeds (a retried DELETE whose first
        attempt went through must not turn into an error); a filled order raises OrderRejected."""
        try:
            self._call("cancel_order", lambda: self._trading.cancel_order_by_id(order_id), order_call=True)
        except OrderRejected as exc:
            if '"canceled"' in exc.message:
                return
            raise

    def close_position(self, symbol: str) -> BrokerOrder:
        """Market order closing the whole position. Only a 429 is retried: Alpaca gives the close order no
        client_order_id of ours, so after an ambiguous failure the caller must look at positions/orders."""
        attempt = 0
        while True:
            attempt += 1
            try:
                order = self._trading.close_position(symbol)
            except Exception as exc:
                failure = error_details(exc)
                if failure is None:
                    raise _unexpected("close_position", exc) from exc
                if not failure.retryable:
                    raise _error_for("close_position", failure, order_call=True) from exc
                if failure.ambiguous:
                    raise BrokerUnavailable(
                        f"close_position {symbol}: outcome unknown ({_describe(failure)}); check positions and "
                        "open orders before retrying",
                        status=failure.status,
                    ) from exc
                if attempt >= self.retry.max_attempts:
                    raise BrokerUnavailable(
                        f"close_position {symbol}: broker unavailable after {attempt} attempts ({_describe(failure)})",
                        status=failure.status,
                    ) from exc
                self._backoff("close_position", attempt, failure)
                continue
            return self._confirm_fill(to_broker_order(order))

    def submit_order(self, request: OrderRequest) -> BrokerOrder:
        """Submit once, idempotently by client_order_id (see the module docstring)."""
        if not request.client_order_id:
            raise OrderRejected("every order needs a client_order_id: it is how a lost response is resolved")
        sdk_request = _sdk_order_request(request)
        cid = request.client_order_id
        attempt = 0
        last: Failure | None = None
        while attempt < self.retry.max_attempts:
            attempt += 1
            try:
                submitted = self._trading.submit_order(sdk_request)
            except Exception as exc:
                failure = error_details(exc)
                if failure is None:
                    raise _unexpected("submit_order", exc) from exc
                if failure.status == 422 and DUPLICATE_CLIENT_ORDER_ID in failure.message.lower():
                    return self._already_submitted(request)
                if not failure.retryable:
                    raise _error_for("submit_order", failure, order_call=True) from exc
                last = failure
                if failure.ambiguous:
                    existing = self._resolve_ambiguous_submit(cid, failure)
                    if existing is not None:
                        log.info("ambiguous submit resolved by client_order_id", extra={"client_order_id": cid})
                        return self._confirm_fill(existing)
                if attempt < self.retry.max_attempts:
                    self._backoff("submit_order", attempt, failure)
                continue
            return self._confirm_fill(to_broker_order(submitted))
        assert last is not None
        raise BrokerUnavailable(
            f"submit_order {cid}: not accepted after {attempt} attempts ({_describe(last)}); the broker has no "
            "order with this client_order_id as of the last lookup",
            status=last.status,
        )

    def _resolve_ambiguous_submit(self, client_order_id: str, failure: Failure) -> BrokerOrder | None:
        try:
            return self.order_by_client_order_id(client_order_id)
        except BrokerError as exc:
            raise BrokerUnavailable(
                f"submit_order {client_order_id}: outcome unknown ({_describe(failure)}) and the lookup by "
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


# ---- conversions ----------------------------------------------------------------------------------------


def to_broker_order(order: SdkOrder) -> BrokerOrder:
    """An alpaca-py Order as the product's BrokerOrder; `raw` is JSON-safe (no UUID/datetime objects).

    A fill is recorded as a close price: a "filled" order without a finite fill price above 0 is a BrokerError
    (the close stays `closing` and is flagged), never a trade closed at NaN, 0 or a negative price."""
    order_type = order.type or order.order_type
    filled_avg_price = _money(order.filled_avg_price, "filled_avg_price")
    if _value(order.status) == "filled" and (filled_avg_price is None or filled_avg_price <= 0):
        raise BrokerError(
            f"order {order.client_order_id}: broker reports it filled without a usable fill price "
            f"(filled_avg_price {order.filled_avg_price!r})"
        )
    return BrokerOrder(
        id=str(order.id),
        client_order_id=order.client_order_id,
        symbol=order.symbol or "",
        side=OrderSide(_value(order.side)) if order.side is not None else OrderSide.BUY,
        qty=_money(order.qty, "qty") or Decimal(0),
        type=OrderType(_value(order_type)) if order_type is not None else OrderType.MARKET,
        status=_value(order.status),
        filled_qty=_money(order.filled_qty, "filled_qty") or Decimal(0),
        filled_avg_price=filled_avg_price,
        submitted_at=_utc_or_none(order.submitted_at),
        filled_at=_utc_or_none(order.filled_at),
        order_class=OrderClass(_value(order.order_class) or "simple"),
        limit_price=_money(order.limit_price, "limit_price"),
        stop_price=_money(order.stop_price, "stop_price"),
        legs=tuple(to_broker_order(leg) for leg in order.legs or ()),
        raw=to_jsonable(order.model_dump(mode="json")),  # type: ignore[arg-type]
    )


def _sdk_order_request(request: OrderRequest) -> sdk_requests.OrderRequest:
    take_profit = (
        sdk_requests.TakeProfitRequest(limit_price=float(request.take_profit_limit_price))
        if request.take_profit_limit_price is not None
        else None
    )
    stop_loss = (
        sdk_requests.StopLossRequest(stop_price=float(request.stop_loss_stop_price))
        if request.stop_loss_stop_price is not None
        else None
    )
    try:
        side = OrderSide(request.side)
        time_in_force = TimeInForce(request.time_in_force)
        order_class = OrderClass(request.order_class)
        order_type = OrderType(request.type)
    except ValueError as exc:  # OrderRequest is a plain dataclass: a caller can still pass a bad string
        raise OrderRejected(f"invalid order {request.client_order_id}: {exc}") from None
    common: dict[str, Any] = {
        "symbol": request.symbol,
        "qty": float(request.qty),
        "side": side.value,
        "time_in_force": time_in_force.value,
        "client_order_id": request.client_order_id,
        "order_class": order_class.value,
        "take_profit": take_profit,
        "stop_loss": stop_loss,
    }
    kinds: dict[OrderType, tuple[type[sdk_requests.OrderRequest], dict[str, Any]]] = {
        OrderType.MARKET: (sdk_requests.MarketOrderRequest, {}),
        OrderType.LIMIT: (sdk_requests.LimitOrderRequest, {"limit_price": _float(request.limit_price)}),
        OrderType.STOP: (sdk_requests.StopOrderRequest, {"stop_price": _float(request.stop_price)}),
        OrderType.STOP_LIMIT: (
            sdk_requests.StopLimitOrderRequest,
            {"stop_price": _float(request.stop_price), "limit_price": _float(request.limit_price)},
        ),
    }
    if order_type not in kinds:
        raise OrderRejected(f"order type {order_type.value} is not supported by this adapter")
    model, extra = kinds[order_type]
    try:
        return model(**common, **{k: v for k, v in extra.items() if v is not None})
    except (ValidationError, ValueError) as exc:
        # Refused before sending: the SDK's own validation (e.g. a bracket without its legs).
        raise OrderRejected(f"invalid order {request.client_order_id}: {_first_line(exc)}") from None


def _quote(symbol: str, sdk_quote: Any) -> Quote | None:
    """The quote, or None when it must not be used. One bad quote (NaN, 0, no timezone) makes its own symbol
    missing; it must not fail the request for every other symbol (a NaN used to raise InvalidOperation here
    and stop the whole sweep)."""
    try:
        bid = _decimal(sdk_quote.bid_price)
        ask = _decimal(sdk_quote.ask_price)
        timestamp = _utc(sdk_quote.timestamp)
    except BrokerError:
        return None
    if bid is None or ask is None or not bid.is_finite() or not ask.is_finite() or bid <= 0 or ask <= 0:
        return None  # Alpaca sends 0 for a missing side; a 0 must never reach a stop-loss decision
    return Quote(symbol=symbol, bid=bid, ask=ask, timestamp=timestamp)


def _bar(symbol: str, item: Any) -> Bar:
    return Bar(
        symbol=symbol,
        timestamp=_utc(item.timestamp),
        open=_decimal(item.open) or Decimal(0),
        high=_decimal(item.high) or Decimal(0),
        low=_decimal(item.low) or Decimal(0),
        close=_decimal(item.close) or Decimal(0),
        volume=int(item.volume),
    )


def _decimal(value: Any, field: str = "a number") -> Decimal | None:
    """Alpaca money arrives as strings (trading) or floats (data); via str() a float keeps its short form."""
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise BrokerError(f"broker sent {str(value)[:40]!r} as {field}, not a number") from None


def _money(value: Any, field: str) -> Decimal | None:
    """A finite amount or None: NaN/Infinity from the broker is an error, never a price or a quantity."""
    amount = _decimal(value, field)
    if amount is not None and not amount.is_finite():
        raise BrokerError(f"broker sent {amount} as {field}")
    return amount


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _value(member: Any) -> str:
    return str(member.value) if isinstance(member, Enum) else str(member)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise BrokerError(f"broker sent a timestamp without timezone: {moment.isoformat()}")
    return moment.astimezone(UTC)


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)


def _new_york(moment: datetime) -> datetime:
    wall = moment.replace(tzinfo=NEW_YORK) if moment.tzinfo is None else moment
    return wall.astimezone(UTC)


def _strip_root(url: str | None) -> str | None:
    """alpaca-py appends "/v2/…" itself; accept a root given with a trailing slash or /v2 anyway."""
    if not url:
        return None
    root = url.strip().rstrip("/")
    return root[: -len("/v2")] if root.endswith("/v2") else root


def _describe(failure: Failure) -> str:
    status = f"HTTP {failure.status}" if failure.status is not None else "no HTTP status"
    return f"{status}: {failure.message}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _error_for(operation: str, failure: Failure, *, order_call: bool = False) -> BrokerError:
    status = failure.status
    if status == 404:
        return NotFound(f"{operation}: {failure.message}", status=404)
    if status == 401:
        return BrokerError(
            f"{operation}: not authorized ({failure.message}); check ALPACA_API_KEY / ALPACA_SECRET_KEY "
            "and that paper keys go with TRADING_MODE=paper",
            status=401,
        )
    if order_call and status in (403, 422):
        return OrderRejected(failure.message, status=status)  # the broker's own words, e.g. "qty must be > 0"
    return BrokerError(f"{operation}: {_describe(failure)}", status=status)


def _unexpected(operation: str, exc: BaseException) -> BrokerError:
    """A response the SDK could not parse (shape changed, not JSON): a broker error, not a crash."""
    return BrokerError(f"{operation}: unexpected response ({type(exc).__name__}: {_first_line(exc)})")
