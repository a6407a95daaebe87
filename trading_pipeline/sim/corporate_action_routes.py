"""`GET /v1/corporate-actions` (market-data API) as the simulator serves it: the splits announced to it.

The shape is what alpaca-py's `CorporateActionsClient.get_corporate_actions` parses (alpaca/data/models/
corporate_actions.py, and the sample JSON of its tests/data/test_corporate_actions.py): actions grouped by type
under "corporate_actions" ("forward_splits", "reverse_splits", …), each with its id, symbol, CUSIP(s), rates as
numbers and dates as YYYY-MM-DD, plus "next_page_token". Alpaca's OpenAPI files in alpacahq/alpaca-docs do not
describe this endpoint (`oas/data/openapi.yaml` has no corporate actions, nor `name_changes`), so the filters
follow alpaca-py's `CorporateActionsRequest`: symbols, cusips, types,
start and end (inclusive, YYYY-MM-DD, default today), ids (exclusive with every other filter), limit (1–1000,
default 100), sort (asc|desc), page_token. A value the API cannot read is a 400 without a "code", as everywhere
on the market-data API. Splits are matched on their ex-date; name changes (`Market.rename`) on their process
date and either symbol, and only once published (their delay of simulated time has passed).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trading_pipeline.sim import wire
from trading_pipeline.sim.api import AlpacaJSON, Simulator, bounded_int
from trading_pipeline.sim.corporate_actions import FORWARD_SPLIT, NEW_YORK, SimNameChange, SimSplit
from trading_pipeline.sim.data_routes import SYMBOL_PATTERN
from trading_pipeline.sim.endpoint import alpaca_route
from trading_pipeline.sim.errors import data_error

# Every type alpaca-py's CorporateActionsType names; the sim has splits and name changes, the others list nothing.
NAME_CHANGE = "name_change"
ACTION_TYPES = (
    "reverse_split",
    "forward_split",
    "unit_split",
    "cash_dividend",
    "stock_dividend",
    "spin_off",
    "cash_merger",
    "stock_merger",
    "stock_and_cash_merger",
    "redemption",
    "name_change",
    "worthless_removal",
    "rights_distribution",
)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_FILTERS = ("symbols", "cusips", "types", "start", "end")


def _listed(query: Mapping[str, str], name: str) -> list[str]:
    return [part.strip() for part in query.get(name, "").split(",") if part.strip()]


def _day(query: Mapping[str, str], name: str, default: date) -> date:
    raw = query.get(name)
    if not raw:
        return default
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise data_error(400, f"invalid {name}: {raw!r} (expected YYYY-MM-DD)") from None


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        kind, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "ca-offset" or int(number) < 0:
            raise ValueError(token)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise data_error(400, "invalid page_token") from None


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"ca-offset:{offset}".encode()).decode()


def split_json(split: SimSplit) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": split.id,
        "symbol": split.symbol,
        "new_rate": wire.number(split.new_rate),
        "old_rate": wire.number(split.old_rate),
        "process_date": split.ex_date.isoformat(),
        "ex_date": split.ex_date.isoformat(),
        "record_date": split.ex_date.isoformat(),
        "payable_date": split.ex_date.isoformat(),
    }
    if split.kind == FORWARD_SPLIT:
        body["cusip"] = split.cusip
    else:  # a reverse split changes the CUSIP
        body["old_cusip"] = split.cusip
        body["new_cusip"] = split.cusip[:-1] + ("1" if split.cusip[-1] != "1" else "2")
    return body


def name_change_json(change: SimNameChange) -> dict[str, Any]:
    """The fields alpaca-py's `NameChange` model reads (alpaca/data/models/corporate_actions.py: old_symbol,
    old_cusip, new_symbol, new_cusip, process_date), under "name_changes"."""
    return {
        "id": change.id,
        "old_symbol": change.old_symbol,
        "old_cusip": change.old_cusip,
        "new_symbol": change.new_symbol,
        "new_cusip": change.new_cusip,
        "process_date": change.process_date.isoformat(),
    }


def corporate_actions(sim: Simulator, request: Request) -> Response:
    q = request.query_params
    symbols, cusips, types, ids = _listed(q, "symbols"), _listed(q, "cusips"), _listed(q, "types"), _listed(q, "ids")
    for symbol in symbols:
        if not SYMBOL_PATTERN.match(symbol):
            raise data_error(400, f"invalid symbol: {symbol}")
    unknown = [t for t in types if t not in ACTION_TYPES]
    if unknown:
        raise data_error(400, f"invalid types: {','.join(unknown)} (one of {', '.join(ACTION_TYPES)})")
    if ids and any(q.get(name) for name in _FILTERS):
        raise data_error(400, "ids cannot be combined with symbols, cusips, types, start or end")
    sort = q.get("sort") or "asc"
    if sort not in ("asc", "desc"):
        raise data_error(400, f"invalid sort: {sort!r} (asc or desc)")
    limit = bounded_int(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT, data=True)
    offset = _offset(q.get("page_token"))
    market = sim.market
    with market.lock:
        today = market.now.astimezone(NEW_YORK).date()
        start, end = _day(q, "start", today), _day(q, "end", today)
        if end < start:
            raise data_error(400, "end should not be before start")
        wanted = set(types) or set(ACTION_TYPES)
        found: list[tuple[date, str, str, str, dict[str, Any]]] = [
            (s.ex_date, s.symbol, s.id, f"{s.kind}s", split_json(s))
            for s in market.corporate_actions.splits
            if (s.id in ids if ids else start <= s.ex_date <= end)
            and (not symbols or s.symbol in symbols)
            and (not cusips or s.cusip in cusips)
            and s.kind in wanted
        ]
        found.extend(
            (n.process_date, n.old_symbol, n.id, "name_changes", name_change_json(n))
            for n in market.corporate_actions.name_changes
            if n.published_at <= market.now
            and (n.id in ids if ids else start <= n.process_date <= end)
            and (not symbols or n.old_symbol in symbols or n.new_symbol in symbols)
            and (not cusips or n.old_cusip in cusips or n.new_cusip in cusips)
            and NAME_CHANGE in wanted
        )
    found.sort(key=lambda entry: entry[:3], reverse=sort == "desc")
    page = found[offset : offset + limit]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for *_, group, body in page:
        grouped.setdefault(group, []).append(body)
    next_token = _token(offset + limit) if offset + limit < len(found) else None
    return AlpacaJSON({"corporate_actions": grouped, "next_page_token": next_token})


CORPORATE_ACTION_ROUTES = (alpaca_route("GET", "/v1/corporate-actions", corporate_actions),)
