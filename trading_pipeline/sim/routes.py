"""Request handlers of the simulator: Alpaca trading API v2, market-data API v2, and the `/_sim/` admin API.

Each handler takes the parsed request and returns (status, JSON body or None, extra headers); an
Alpaca-style error is raised as `SimApiError`. The HTTP plumbing (auth, faults, sockets) lives in
`server.py`; Alpaca's JSON shapes in `wire.py`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from trading_pipeline.sim import wire
from trading_pipeline.sim.account import SimOrder
from trading_pipeline.sim.errors import CODE_INVALID_REQUEST, SimApiError, invalid
from trading_pipeline.sim.market import Market

if TYPE_CHECKING:
    from trading_pipeline.sim.server import SimBroker

# What the data API accepts as a symbol; anything else fails the whole request with 400, as Alpaca does.
SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9.\-/]{0,19}$")
DATA_FEEDS = ("iex", "sip", "delayed_sip", "otc", "boats", "overnight")
BARS_DEFAULT_LIMIT = 1000
BARS_MAX_LIMIT = 10_000
ORDERS_DEFAULT_LIMIT = 50
ORDERS_MAX_LIMIT = 500


@dataclass
class Request:
    query: dict[str, str]
    path_params: dict[str, str]
    body: Any = None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["SimBroker", Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    data_api: bool = False
    takes_body: bool = False

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def is_admin(self) -> bool:
        return self.template.startswith("/_sim/")


def data_error(status: int, message: str) -> SimApiError:
    """The market-data API's errors carry no "code" (alpaca-py's APIError.code raises on them)."""
    return SimApiError(status, message, None)


# ---- parameter helpers ----------------------------------------------------------------------------------


def _flag(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("true", "1", "yes")


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int, *, data: bool) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        message = f"invalid {name}: {raw!r} (must be between {low} and {high})"
        raise data_error(400, message) if data else invalid(message)
    return value


def parse_time(raw: str, *, name: str, end_of_day: bool = False) -> datetime:
    """RFC 3339 or YYYY-MM-DD (midnight UTC, or the end of that day for an `end`)."""
    text = raw.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.max if end_of_day else time.min, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise data_error(400, f"invalid {name}: {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _symbols(query: Mapping[str, str]) -> list[str]:
    raw = query.get("symbols", "")
    symbols = [s.strip() for s in raw.split(",") if s.strip()]
    if not symbols:
        raise data_error(400, "missing symbols")
    for symbol in symbols:
        if not SYMBOL_PATTERN.match(symbol):
            raise data_error(400, f"invalid symbol: {symbol}")
    return list(dict.fromkeys(symbols))


def _feed(query: Mapping[str, str]) -> None:
    feed = query.get("feed")
    if feed and feed not in DATA_FEEDS:
        raise data_error(400, f"invalid feed: {feed}")


# ---- trading API ----------------------------------------------------------------------------------------


def get_account(sim: SimBroker, req: Request) -> Response:
    with sim.market.lock:
        return Response(200, wire.account_json(sim.market))


def get_clock(sim: SimBroker, req: Request) -> Response:
    return Response(200, wire.clock_json(sim.market.clock()))


def get_calendar(sim: SimBroker, req: Request) -> Response:
    sessions = sim.market.sessions
    try:
        start = date.fromisoformat(req.query["start"][:10]) if req.query.get("start") else sessions.days[0]
        end = date.fromisoformat(req.query["end"][:10]) if req.query.get("end") else sessions.days[-1]
    except ValueError:
        raise invalid("invalid start or end: expected YYYY-MM-DD") from None
    return Response(200, [wire.calendar_json(sim.market, i) for i in sessions.indices_between(start, end)])


def get_assets(sim: SimBroker, req: Request) -> Response:
    status = req.query.get("status") or None
    asset_class = req.query.get("asset_class") or "us_equity"
    exchange = req.query.get("exchange") or None
    if status not in (None, "active", "inactive"):
        raise invalid(f"invalid status: {status!r}")
    if asset_class != "us_equity":
        return Response(200, [])
    assets = [
        wire.asset_json(asset)
        for asset in sim.market.assets
        if (status is None or asset.status == status) and (exchange is None or asset.exchange == exchange)
    ]
    return Response(200, assets)


def get_asset(sim: SimBroker, req: Request) -> Response:
    key = req.path_params["symbol"]
    asset = sim.market.asset(key)
    if asset is None:
        asset = next((a for a in sim.market.assets if a.id == key), None)
    if asset is None:
        raise SimApiError(404, "asset not found", 40410000)
    return Response(200, wire.asset_json(asset))


def get_positions(sim: SimBroker, req: Request) -> Response:
    with sim.market.lock:
        positions = sorted(sim.market.book.positions.values(), key=lambda p: p.symbol)
        return Response(200, [wire.position_json(sim.market, p) for p in positions])


def get_position(sim: SimBroker, req: Request) -> Response:
    with sim.market.lock:
        position = sim.market.book.position(req.path_params["symbol"])
        return Response(200, wire.position_json(sim.market, position))


def close_position(sim: SimBroker, req: Request) -> Response:
    market = sim.market
    with market.lock:
        if req.query.get("qty") or req.query.get("percentage"):
            raise invalid("partial closes (qty/percentage) are not supported by the simulator")
        order = market.book.close_position(req.path_params["symbol"])
        body = wire.order_json(market, order)  # as created: the fill is looked up later, as with Alpaca
        market.book.evaluate()
        return Response(200, body)


def post_order(sim: SimBroker, req: Request) -> Response:
    market = sim.market
    with market.lock:
        order = market.place_order(req.body)
        body = wire.order_json(market, order)
        market.book.evaluate()
        return Response(200, body)


def _order_matches(order: SimOrder, status: str, symbols: set[str] | None, side: str | None) -> bool:
    if status == "open" and order.is_terminal:
        return False
    if status == "closed" and not order.is_terminal:
        return False
    if symbols is not None and order.symbol not in symbols:
        return False
    return side is None or order.side == side


def get_orders(sim: SimBroker, req: Request) -> Response:
    q = req.query
    status = q.get("status") or "open"
    if status not in ("open", "closed", "all"):
        raise invalid(f"invalid status: {status!r}")
    limit = _int(q, "limit", ORDERS_DEFAULT_LIMIT, 1, ORDERS_MAX_LIMIT, data=False)
    direction = q.get("direction") or "desc"
    if direction not in ("asc", "desc"):
        raise invalid(f"invalid direction: {direction!r}")
    nested = _flag(q, "nested")
    symbols = {s.strip() for s in q["symbols"].split(",") if s.strip()} if q.get("symbols") else None
    side = q.get("side") or None
    after = parse_time(q["after"], name="after") if q.get("after") else None
    until = parse_time(q["until"], name="until") if q.get("until") else None
    market = sim.market
    with market.lock:
        book = market.book
        selected: list[SimOrder] = []
        for order in book.orders.values():
            if after is not None and order.submitted_at is not None and order.submitted_at <= after:
                continue
            if until is not None and order.submitted_at is not None and order.submitted_at > until:
                continue
            if nested:
                if order.parent_id is not None:
                    continue  # shown under its parent
                family = [order, *book.legs(order)]
                if not any(_order_matches(o, status, symbols, side) for o in family):
                    continue
            elif not _order_matches(order, status, symbols, side):
                continue
            selected.append(order)
        # Insertion order is submission order; a stable sort keeps parents before their legs.
        selected.sort(key=lambda o: o.submitted_at or o.created_at, reverse=direction == "desc")
        return Response(200, [wire.order_json(market, o, nested=nested) for o in selected[:limit]])


def get_order(sim: SimBroker, req: Request) -> Response:
    with sim.market.lock:
        order = sim.market.book.order(req.path_params["order_id"])
        return Response(200, wire.order_json(sim.market, order, nested=_flag(req.query, "nested", True)))


def get_order_by_client_id(sim: SimBroker, req: Request) -> Response:
    client_order_id = req.query.get("client_order_id")
    if not client_order_id:
        raise invalid("client_order_id is required")
    with sim.market.lock:
        order = sim.market.book.order_by_client_id(client_order_id)
        return Response(200, wire.order_json(sim.market, order))


def cancel_order(sim: SimBroker, req: Request) -> Response:
    sim.market.cancel_order(req.path_params["order_id"])
    return Response(204)


# ---- market-data API ------------------------------------------------------------------------------------


def latest_quotes(sim: SimBroker, req: Request) -> Response:
    symbols = _symbols(req.query)
    _feed(req.query)
    quotes = sim.market.quotes(symbols)
    return Response(200, {"quotes": {s: wire.quote_json(q) for s, q in quotes.items()}})


def snapshots(sim: SimBroker, req: Request) -> Response:
    symbols = _symbols(req.query)
    _feed(req.query)
    market = sim.market
    with market.lock:
        today = market.now.date()
        bars = market.daily_bars(symbols, today - timedelta(days=14), today + timedelta(days=1))
        body: dict[str, Any] = {}
        for symbol, quote in market.quotes(symbols).items():
            history = bars.get(symbol, [])
            last = market.last_price(symbol)
            minute = {
                "o": wire.number(last),
                "h": wire.number(last),
                "l": wire.number(last),
                "c": wire.number(last),
                "v": 100,
                "n": 1,
                "vw": wire.number(last),
                "t": quote.timestamp.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            body[symbol] = {
                "latestTrade": wire.trade_json(quote, last),
                "latestQuote": wire.quote_json(quote),
                "minuteBar": minute,
                "dailyBar": wire.bar_json(history[-1]) if history else None,
                "prevDailyBar": wire.bar_json(history[-2]) if len(history) > 1 else None,
            }
        return Response(200, body)


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        kind, _, number = text.partition(":")
        if kind != "offset":
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise data_error(400, "invalid page_token") from None


def stock_bars(sim: SimBroker, req: Request) -> Response:
    """Daily bars, symbols alphabetical then time; `limit` counts bars across all symbols per page."""
    q = req.query
    symbols = sorted(_symbols(q))
    _feed(q)
    timeframe = q.get("timeframe", "")
    if timeframe not in ("1Day", "1D", "1day"):
        raise data_error(400, f"invalid timeframe: {timeframe!r} (the simulator serves 1Day bars)")
    limit = _int(q, "limit", BARS_DEFAULT_LIMIT, 1, BARS_MAX_LIMIT, data=True)
    offset = _page_offset(q.get("page_token"))
    market = sim.market
    with market.lock:
        now = market.now
        start = (
            parse_time(q["start"], name="start")
            if q.get("start")
            else now.replace(hour=0, minute=0, second=0, microsecond=0)
        )
        end = parse_time(q["end"], name="end", end_of_day=True) if q.get("end") else now
        if end < start:
            raise data_error(400, "end should not be before start")
        # A daily bar is stamped at midnight New York; widen by a day on each side, then filter exactly.
        by_symbol = market.daily_bars(symbols, start.date() - timedelta(days=1), end.date() + timedelta(days=1))
        flat = [
            (symbol, bar)
            for symbol in symbols
            for bar in (by_symbol.get(symbol, [])[::-1] if q.get("sort") == "desc" else by_symbol.get(symbol, []))
            if start <= bar.timestamp <= end
        ]
    page = flat[offset : offset + limit]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for symbol, bar in page:
        grouped.setdefault(symbol, []).append(wire.bar_json(bar))
    next_token = _page_token(offset + limit) if offset + limit < len(flat) else None
    return Response(200, {"bars": grouped, "next_page_token": next_token})


# ---- admin API (/_sim/) ---------------------------------------------------------------------------------


def admin_get_faults(sim: SimBroker, req: Request) -> Response:
    return Response(200, {"config": sim.faults.config.to_json(), "counters": sim.faults.counters()})


def _object_body(req: Request) -> dict[str, Any]:
    """The admin routes take a JSON object; anything else (true, 5, a list) is a 422, not a TypeError's 500."""
    if req.body is not None and not isinstance(req.body, dict):
        raise SimApiError(422, "request body must be a JSON object", CODE_INVALID_REQUEST)
    return dict(req.body or {})


def admin_set_faults(sim: SimBroker, req: Request) -> Response:
    body = _object_body(req)
    try:
        if body.pop("clear", False):
            sim.faults.clear()
        if body.pop("reset_counters", False):
            sim.faults.reset_counters()
        script = body.pop("fail_next", None)
        if body:
            if "routes" in body and body["routes"] is not None:
                body["routes"] = frozenset(body["routes"])
            sim.faults.configure(**body)
        if script:
            sim.faults.fail_next(script["kind"], int(script.get("count", 1)), script.get("route"))
    except (ValueError, TypeError, KeyError) as exc:
        raise SimApiError(422, f"invalid fault settings: {exc}", CODE_INVALID_REQUEST) from None
    return admin_get_faults(sim, req)


def admin_get_counters(sim: SimBroker, req: Request) -> Response:
    return Response(200, sim.faults.counters())


def admin_reset_counters(sim: SimBroker, req: Request) -> Response:
    sim.faults.reset_counters()
    return Response(204)


def _admin_clock_body(market: Market) -> dict[str, Any]:
    clock = market.clock()
    return {**wire.clock_json(clock), "timestamp_utc": wire.rfc3339(clock.timestamp)}


def admin_get_clock(sim: SimBroker, req: Request) -> Response:
    return Response(200, _admin_clock_body(sim.market))


def admin_move_clock(sim: SimBroker, req: Request) -> Response:
    body = req.body or {}
    try:
        if "set" in body:
            sim.market.set_time(parse_time(str(body["set"]), name="set"))
        elif "advance_seconds" in body:
            sim.market.advance(timedelta(seconds=float(body["advance_seconds"])))
        else:
            raise ValueError('send {"set": "<RFC 3339>"} or {"advance_seconds": N}')
    except (ValueError, TypeError, ArithmeticError) as exc:  # ArithmeticError: an overflowing timedelta
        raise SimApiError(422, str(exc) or type(exc).__name__, CODE_INVALID_REQUEST) from None
    return Response(200, _admin_clock_body(sim.market))


def admin_scenario(sim: SimBroker, req: Request) -> Response:
    body = _object_body(req)
    kind = body.pop("kind", None)
    symbol = body.pop("symbol", None)
    if not isinstance(kind, str) or not isinstance(symbol, str):
        raise SimApiError(
            422, 'send {"kind": "gap|set_price|stale|halt|resume", "symbol": "..."}', CODE_INVALID_REQUEST
        )
    try:
        sim.market.apply_scenario(kind, symbol, **body)
    except KeyError as exc:
        raise SimApiError(422, f"missing or unknown: {exc}", CODE_INVALID_REQUEST) from None
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise SimApiError(422, str(exc), CODE_INVALID_REQUEST) from None
    quote = sim.market.quote(symbol)
    return Response(200, {"symbol": symbol, "quote": None if quote is None else wire.quote_json(quote)})


# ---- the table ------------------------------------------------------------------------------------------


def _route(method: str, template: str, handler: Handler, **flags: bool) -> Route:
    regex = re.escape(template)
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
    return Route(method, template, re.compile(f"^{regex}$"), handler, **flags)


ROUTES: tuple[Route, ...] = (
    _route("GET", "/v2/account", get_account),
    _route("GET", "/v2/clock", get_clock),
    _route("GET", "/v2/calendar", get_calendar),
    _route("GET", "/v2/assets", get_assets),
    _route("GET", "/v2/assets/{symbol}", get_asset),
    _route("GET", "/v2/positions", get_positions),
    _route("GET", "/v2/positions/{symbol}", get_position),
    _route("DELETE", "/v2/positions/{symbol}", close_position),
    _route("POST", "/v2/orders", post_order, takes_body=True),
    _route("GET", "/v2/orders", get_orders),
    _route("GET", "/v2/orders:by_client_order_id", get_order_by_client_id),
    _route("GET", "/v2/orders/{order_id}", get_order),
    _route("DELETE", "/v2/orders/{order_id}", cancel_order),
    _route("GET", "/v2/stocks/quotes/latest", latest_quotes, data_api=True),
    _route("GET", "/v2/stocks/snapshots", snapshots, data_api=True),
    _route("GET", "/v2/stocks/bars", stock_bars, data_api=True),
    _route("GET", "/_sim/faults", admin_get_faults),
    _route("POST", "/_sim/faults", admin_set_faults, takes_body=True),
    _route("GET", "/_sim/counters", admin_get_counters),
    _route("DELETE", "/_sim/counters", admin_reset_counters),
    _route("GET", "/_sim/clock", admin_get_clock),
    _route("POST", "/_sim/clock", admin_move_clock, takes_body=True),
    _route("POST", "/_sim/scenario", admin_scenario, takes_body=True),
)


def match(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    for route in ROUTES:
        if route.method != method:
            continue
        found = route.pattern.match(path)
        if found is not None:
            return route, found.groupdict()
    return None, {}
