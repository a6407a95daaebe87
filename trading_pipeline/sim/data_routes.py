"""Alpaca's market-data API v2 as the simulator serves it: latest quotes, snapshots and daily bars.

As Alpaca does: unknown symbols are omitted from a multi-symbol answer, one malformed symbol fails the
whole request with 400, a feed the plan lacks is a 403, and errors carry no "code".
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trading_pipeline.sim import wire
from trading_pipeline.sim.api import AlpacaJSON, Simulator, bounded_int, parse_time
from trading_pipeline.sim.endpoint import alpaca_route
from trading_pipeline.sim.errors import data_error

# What the data API accepts as a symbol; anything else fails the whole request with 400, as Alpaca does.
SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9.\-/]{0,19}$")
DATA_FEEDS = ("iex", "sip", "delayed_sip", "otc", "boats", "overnight")
# alpaca-docs content/market-data/_index.md, "Subscription Plans": the Free plan's "Real-time market coverage"
# is IEX and its "Historical data delay" 15 minutes; oas/data/openapi.yaml, parameter `feed`: "`sip` and `otc`
# are only available to those with a subscription". delayed_sip is SIP 15 minutes late, which Free includes.
FREE_PLAN_FEEDS = ("iex", "delayed_sip")
HISTORICAL_DELAY = timedelta(minutes=15)
BARS_DEFAULT_LIMIT = 1000
BARS_MAX_LIMIT = 10_000


def _symbols(query: Mapping[str, str]) -> list[str]:
    raw = query.get("symbols", "")
    symbols = [s.strip() for s in raw.split(",") if s.strip()]
    if not symbols:
        raise data_error(400, "missing symbols")
    for symbol in symbols:
        if not SYMBOL_PATTERN.match(symbol):
            raise data_error(400, f"invalid symbol: {symbol}")
    return list(dict.fromkeys(symbols))


def _feed(sim: Simulator, query: Mapping[str, str], *, until: datetime | None = None) -> None:
    """An unknown feed is a 400; one the plan lacks a 403 — for SIP only when the request reaches into the last
    15 minutes (`until` None: a latest quote or snapshot, which always does). The body is the one Alpaca sends
    a Free plan asking for SIP, as clients have logged it: {"message": "subscription does not permit querying
    recent SIP data"}. No feed given: Alpaca picks the best one the plan has, so nothing to refuse."""
    feed = query.get("feed")
    if not feed:
        return
    if feed not in DATA_FEEDS:
        raise data_error(400, f"invalid feed: {feed}")
    if feed in sim.data_feeds:
        return
    if feed == "sip":
        if until is not None and until <= sim.market.now - HISTORICAL_DELAY:
            return  # history older than the delay is on every plan
        raise data_error(403, "subscription does not permit querying recent SIP data")
    raise data_error(403, f"subscription does not permit querying {feed.upper()} data")


def latest_quotes(sim: Simulator, request: Request) -> Response:
    symbols = _symbols(request.query_params)
    _feed(sim, request.query_params)
    quotes = sim.market.quotes(symbols)
    return AlpacaJSON({"quotes": {s: wire.quote_json(q) for s, q in quotes.items()}})


def snapshots(sim: Simulator, request: Request) -> Response:
    symbols = _symbols(request.query_params)
    _feed(sim, request.query_params)
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
        return AlpacaJSON(body)


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


def stock_bars(sim: Simulator, request: Request) -> Response:
    """Daily bars, symbols alphabetical then time; `limit` counts bars across all symbols per page."""
    q = request.query_params
    symbols = sorted(_symbols(q))
    timeframe = q.get("timeframe", "")
    if timeframe not in ("1Day", "1D", "1day"):
        raise data_error(400, f"invalid timeframe: {timeframe!r} (the simulator serves 1Day bars)")
    limit = bounded_int(q, "limit", BARS_DEFAULT_LIMIT, 1, BARS_MAX_LIMIT, data=True)
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
        _feed(sim, q, until=end)
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
    return AlpacaJSON({"bars": grouped, "next_page_token": next_token})


DATA_ROUTES = (
    alpaca_route("GET", "/v2/stocks/quotes/latest", latest_quotes),
    alpaca_route("GET", "/v2/stocks/snapshots", snapshots),
    alpaca_route("GET", "/v2/stocks/bars", stock_bars),
)
