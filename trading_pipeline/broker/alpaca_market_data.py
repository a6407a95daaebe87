"""Alpaca's market-data API (latest quotes, daily bars) through alpaca-py's StockHistoricalDataClient.

Latest quotes are deduplicated, validated (malformed symbols are reported, never sent: one would fail the
whole request with 400) and fetched in chunks of `QUOTE_CHUNK_SIZE` symbols, one request each; a quote the
product must not act on (NaN, 0, no timezone) makes its own symbol missing, never the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.requests import CorporateActionsRequest, StockBarsRequest, StockLatestQuoteRequest
from alpaca.data.timeframe import TimeFrame

from trading_pipeline.broker.alpaca_calls import AlpacaCalls, Attempts
from trading_pipeline.broker.alpaca_models import NEW_YORK, bar_from_sdk, decimal_or_none, quote_from_sdk
from trading_pipeline.broker.base import Bar, QuoteBatch
from trading_pipeline.broker.symbols import split_symbols
from trading_pipeline.domain.corporate_actions import FORWARD_SPLIT, NAME_CHANGE, REVERSE_SPLIT, CorporateAction
from trading_pipeline.domain.types import Quote

log = logging.getLogger("trading_pipeline.broker.alpaca")

# Symbols per latest-quotes request. Alpaca documents no maximum, but the symbols travel in the URL:
# 500 symbols of up to 10 characters keep the request line under ~6 KB, below the 8 KB limit common to
# proxies and load balancers, while 5,000 symbols still take only 10 requests.
QUOTE_CHUNK_SIZE = 500
# Symbols per daily-bars call (the SDK then follows next_page_token itself).
BARS_CHUNK_SIZE = 500
DEFAULT_FEED = "iex"
CORPORATE_ACTIONS_CHUNK = 100  # symbols per corporate-actions request (they travel in the URL)
_KINDS = {"forward_splits": FORWARD_SPLIT, "reverse_splits": REVERSE_SPLIT, "name_changes": NAME_CHANGE}


class MarketDataCalls(AlpacaCalls):
    """The market-data half of `AlpacaBroker`."""

    _data: StockHistoricalDataClient
    _corporate: CorporateActionsClient
    quote_chunk_size: int
    feed: str

    def latest_quotes(self, symbols: Iterable[str]) -> QuoteBatch:
        valid, rejected = split_symbols(symbols)
        attempts = Attempts()
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
                quote = quote_from_sdk(symbol, sdk_quote)
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
                bars.extend(bar_from_sdk(symbol, item) for item in items)
        bars.sort(key=lambda bar: (bar.symbol, bar.timestamp))
        return bars

    def corporate_actions(self, symbols: Iterable[str], start: date, end: date) -> list[CorporateAction]:
        """Forward and reverse splits and name changes for `symbols` with an ex-date (a name change's process
        date) in [start, end], through alpaca-py's CorporateActionsClient (`GET /v1/corporate-actions`)."""
        valid, rejected = split_symbols(symbols)
        if rejected:
            raise ValueError(f"malformed symbols, not sent: {rejected}")
        found: list[CorporateAction] = []
        for offset in range(0, len(valid), CORPORATE_ACTIONS_CHUNK):
            chunk = valid[offset : offset + CORPORATE_ACTIONS_CHUNK]
            request = CorporateActionsRequest(symbols=chunk, types=list(_KINDS.values()), start=start, end=end)
            result = self._call("corporate_actions", lambda r=request: self._corporate.get_corporate_actions(r))
            for group, items in (getattr(result, "data", None) or {}).items():
                kind = _KINDS.get(group)
                if kind is not None:
                    found.extend(_corporate_action(kind, item) for item in items)
        return sorted(found, key=lambda a: (a.ex_date, a.symbol))


def _corporate_action(kind: str, item: Any) -> CorporateAction:
    if kind == NAME_CHANGE:
        return CorporateAction(kind, item.old_symbol, item.process_date, new_symbol=item.new_symbol)
    return CorporateAction(
        kind,
        item.symbol,
        item.ex_date,
        old_rate=decimal_or_none(item.old_rate) or Decimal(1),
        new_rate=decimal_or_none(item.new_rate) or Decimal(1),
    )
