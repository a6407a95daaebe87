"""What the simulator's route handlers share: the `Simulator` they act on, Alpaca's JSON response, and
Alpaca-style query parameters.

A handler is a plain function `handler(sim, request)` — or `handler(sim, request, body)` for a route that
takes a JSON body — over Starlette's `Request`, returning a Starlette `Response`; it raises `SimApiError`
for Alpaca's errors. It runs in Starlette's thread pool, so it may take the market lock. Counting, faults,
auth and body parsing happen around it (`endpoint.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Protocol

from starlette.responses import Response

from trading_pipeline.sim.errors import data_error, invalid
from trading_pipeline.sim.faults import FaultInjector
from trading_pipeline.sim.market import Market
from trading_pipeline.sim.rate_limit import SimRateLimit


class Simulator(Protocol):
    """What a handler may touch (implemented by `SimBroker`)."""

    market: Market
    faults: FaultInjector
    data_feeds: tuple[str, ...]
    rate_limit: SimRateLimit

    def sync_clock(self) -> None: ...


class AlpacaJSON(Response):
    """JSON as Alpaca sends it: compact, ASCII-escaped, money as strings (Decimal), times as ISO 8601."""

    media_type = "application/json; charset=UTF-8"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# ---- query parameters -----------------------------------------------------------------------------------


def flag(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("true", "1", "yes")


def bounded_int(query: Mapping[str, str], name: str, default: int, low: int, high: int, *, data: bool) -> int:
    """An integer parameter within [low, high]; out of range or not a number is the API's 400 / 422."""
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
