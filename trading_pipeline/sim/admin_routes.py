"""The simulator's own admin API under /_sim/: faults, counters, the rate limit, the clock and market scenarios.

Never faulted while `exempt_admin` is set (the default), needs no auth, so a test can always reconfigure
the simulator it is breaking.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trading_pipeline.sim import wire
from trading_pipeline.sim.api import AlpacaJSON, Simulator, parse_time
from trading_pipeline.sim.endpoint import alpaca_route
from trading_pipeline.sim.errors import CODE_INVALID_REQUEST, SimApiError
from trading_pipeline.sim.market import Market
from trading_pipeline.sim.rate_limit import RateLimitConfig


def admin_get_faults(sim: Simulator, request: Request) -> Response:
    return AlpacaJSON({"config": sim.faults.config.to_json(), "counters": sim.faults.counters()})


def _object_body(body: Any) -> dict[str, Any]:
    """The admin routes take a JSON object; anything else (true, 5, a list) is a 422, not a TypeError's 500."""
    if body is not None and not isinstance(body, dict):
        raise SimApiError(422, "request body must be a JSON object", CODE_INVALID_REQUEST)
    return dict(body or {})


def admin_set_faults(sim: Simulator, request: Request, body: Any) -> Response:
    settings = _object_body(body)
    try:
        if settings.pop("clear", False):
            sim.faults.clear()
        if settings.pop("reset_counters", False):
            sim.faults.reset_counters()
        script = settings.pop("fail_next", None)
        if settings:
            if "routes" in settings and settings["routes"] is not None:
                settings["routes"] = frozenset(settings["routes"])
            sim.faults.configure(**settings)
        if script:
            sim.faults.fail_next(script["kind"], int(script.get("count", 1)), script.get("route"))
    except (ValueError, TypeError, KeyError) as exc:
        raise SimApiError(422, f"invalid fault settings: {exc}", CODE_INVALID_REQUEST) from None
    return admin_get_faults(sim, request)


def admin_get_counters(sim: Simulator, request: Request) -> Response:
    return AlpacaJSON(sim.faults.counters())


def admin_reset_counters(sim: Simulator, request: Request) -> Response:
    sim.faults.reset_counters()
    return Response(status_code=204)


def admin_get_rate_limit(sim: Simulator, request: Request) -> Response:
    return AlpacaJSON({"config": sim.rate_limit.config.to_json(), "counters": sim.rate_limit.counters()})


def admin_set_rate_limit(sim: Simulator, request: Request, body: Any) -> Response:
    """`POST /_sim/rate_limit {"trading": 200, "data": 200, "window_seconds": 60}` (null: not enforced);
    `{"alpaca": true}` for Alpaca's own 200/min on both; `"reset_counters": true` clears the 429 counts."""
    settings = _object_body(body)
    try:
        if settings.pop("reset_counters", False):
            sim.rate_limit.reset_counters()
        if settings.pop("alpaca", False):
            sim.rate_limit.configure(RateLimitConfig.alpaca(), **settings)
        elif settings:
            sim.rate_limit.configure(**settings)
    except (ValueError, TypeError) as exc:
        raise SimApiError(422, f"invalid rate limit settings: {exc}", CODE_INVALID_REQUEST) from None
    return admin_get_rate_limit(sim, request)


def _admin_clock_body(market: Market) -> dict[str, Any]:
    clock = market.clock()
    return {**wire.clock_json(clock), "timestamp_utc": wire.rfc3339(clock.timestamp)}


def admin_get_clock(sim: Simulator, request: Request) -> Response:
    return AlpacaJSON(_admin_clock_body(sim.market))


def admin_move_clock(sim: Simulator, request: Request, body: Any) -> Response:
    move = body or {}
    try:
        if "set" in move:
            sim.market.set_time(parse_time(str(move["set"]), name="set"))
        elif "advance_seconds" in move:
            sim.market.advance(timedelta(seconds=float(move["advance_seconds"])))
        else:
            raise ValueError('send {"set": "<RFC 3339>"} or {"advance_seconds": N}')
    except (ValueError, TypeError, ArithmeticError) as exc:  # ArithmeticError: an overflowing timedelta
        raise SimApiError(422, str(exc) or type(exc).__name__, CODE_INVALID_REQUEST) from None
    return AlpacaJSON(_admin_clock_body(sim.market))


def admin_scenario(sim: Simulator, request: Request, body: Any) -> Response:
    params = _object_body(body)
    kind = params.pop("kind", None)
    symbol = params.pop("symbol", None)
    if not isinstance(kind, str) or not isinstance(symbol, str):
        raise SimApiError(
            422, 'send {"kind": "gap|set_price|stale|halt|resume|tradable", "symbol": "..."}', CODE_INVALID_REQUEST
        )
    try:
        sim.market.apply_scenario(kind, symbol, **params)
    except KeyError as exc:
        raise SimApiError(422, f"missing or unknown: {exc}", CODE_INVALID_REQUEST) from None
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise SimApiError(422, str(exc), CODE_INVALID_REQUEST) from None
    quote = sim.market.quote(symbol)
    return AlpacaJSON({"symbol": symbol, "quote": None if quote is None else wire.quote_json(quote)})


def admin_partial_fills(sim: Simulator, request: Request, body: Any) -> Response:
    """`POST /_sim/partial_fills {"rate": 0.1, "fraction": 0.5}`: how often a market order fills in part."""
    params = _object_body(body)
    try:
        sim.market.configure_partial_fills(float(params["rate"]), params.get("fraction", "0.5"))
    except KeyError:
        raise SimApiError(422, 'send {"rate": 0..1, "fraction": 0..1 (exclusive)}', CODE_INVALID_REQUEST) from None
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise SimApiError(422, str(exc), CODE_INVALID_REQUEST) from None
    fills = sim.market.book.partial_fills
    return AlpacaJSON({"rate": fills.rate, "fraction": str(fills.fraction)})


def admin_split(sim: Simulator, request: Request, body: Any) -> Response:
    """`{"symbol": "ABC", "new_rate": 2, "old_rate": 1, "ex_date": "YYYY-MM-DD"}`: announce a split, applied at
    the ex-date's beginning-of-day process; without `ex_date`, applied at once (`Market.split`)."""
    params = _object_body(body)
    symbol = params.get("symbol")
    if not isinstance(symbol, str) or "new_rate" not in params or "old_rate" not in params:
        raise SimApiError(
            422, 'send {"symbol": "...", "new_rate": N, "old_rate": N, "ex_date": "YYYY-MM-DD"}', CODE_INVALID_REQUEST
        )
    try:
        ex_date = date.fromisoformat(str(params["ex_date"])) if params.get("ex_date") else None
        split = sim.market.split(symbol, params["new_rate"], params["old_rate"], ex_date)
    except KeyError as exc:
        raise SimApiError(422, f"unknown symbol: {exc}", CODE_INVALID_REQUEST) from None
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise SimApiError(422, str(exc), CODE_INVALID_REQUEST) from None
    position = sim.market.book.positions.get(symbol)
    return AlpacaJSON(
        {
            "id": split.id,
            "symbol": split.symbol,
            "kind": split.kind,
            "new_rate": wire.money(split.new_rate),
            "old_rate": wire.money(split.old_rate),
            "ex_date": split.ex_date.isoformat(),
            "effective_at": wire.rfc3339(split.effective_at),
            "applied": split.applied,
            "cash_in_lieu": wire.money(split.cash_in_lieu),
            "orders_rebased": list(split.orders_rebased),
            "position_qty": None if position is None else wire.money(position.qty),
        }
    )


def admin_drift_position(sim: Simulator, request: Request, body: Any) -> Response:
    """`POST /_sim/positions {"symbol": "ABC", "qty": 27}`: the broker now holds 27 (drift: shares sold or moved
    outside every client). Orders placed outside the pipeline need no admin route: any client can POST them to
    `/v2/orders`, as Alpaca's web app or another script would."""
    params = _object_body(body)
    if not isinstance(params.get("symbol"), str) or "qty" not in params:
        raise SimApiError(422, 'send {"symbol": "...", "qty": N}', CODE_INVALID_REQUEST)
    try:
        sim.market.drift_position(params["symbol"], params["qty"])
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise SimApiError(422, str(exc), CODE_INVALID_REQUEST) from None
    position = sim.market.book.positions.get(params["symbol"])
    return AlpacaJSON({"symbol": params["symbol"], "qty": "0" if position is None else str(position.qty)})


def admin_account(sim: Simulator, request: Request, body: Any) -> Response:
    """`POST /_sim/account {"pattern_day_trader": true}`: Alpaca's PDT protection refuses day-trade exits
    (`Market.set_pattern_day_trader`); answers the account as `GET /v2/account` does."""
    params = _object_body(body)
    if not isinstance(params.get("pattern_day_trader"), bool):
        raise SimApiError(422, 'send {"pattern_day_trader": true|false}', CODE_INVALID_REQUEST)
    sim.market.set_pattern_day_trader(params["pattern_day_trader"])
    with sim.market.lock:
        return AlpacaJSON(wire.account_json(sim.market))


def admin_rename(sim: Simulator, request: Request, body: Any) -> Response:
    """`POST /_sim/rename {"old_symbol": "ABC", "new_symbol": "ABCD", "publish_delay_seconds": 3600}`: a symbol
    change, applied at once and listed by `/v1/corporate-actions` after the delay of simulated time
    (`Market.rename`)."""
    params = _object_body(body)
    old, new = params.get("old_symbol"), params.get("new_symbol")
    if not isinstance(old, str) or not isinstance(new, str):
        raise SimApiError(
            422, 'send {"old_symbol": "...", "new_symbol": "...", "publish_delay_seconds": N}', CODE_INVALID_REQUEST
        )
    try:
        delay = timedelta(seconds=float(params.get("publish_delay_seconds", 0)))
        change = sim.market.rename(old, new, publish_delay=delay)
    except KeyError as exc:
        raise SimApiError(422, f"unknown symbol: {exc}", CODE_INVALID_REQUEST) from None
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise SimApiError(422, str(exc), CODE_INVALID_REQUEST) from None
    return AlpacaJSON(
        {
            "id": change.id,
            "old_symbol": change.old_symbol,
            "new_symbol": change.new_symbol,
            "process_date": change.process_date.isoformat(),
            "published_at": wire.rfc3339(change.published_at),
        }
    )


ADMIN_ROUTES = (
    alpaca_route("GET", "/_sim/faults", admin_get_faults),
    alpaca_route("POST", "/_sim/faults", admin_set_faults, takes_body=True),
    alpaca_route("GET", "/_sim/rate_limit", admin_get_rate_limit),
    alpaca_route("POST", "/_sim/rate_limit", admin_set_rate_limit, takes_body=True),
    alpaca_route("GET", "/_sim/counters", admin_get_counters),
    alpaca_route("DELETE", "/_sim/counters", admin_reset_counters),
    alpaca_route("GET", "/_sim/clock", admin_get_clock),
    alpaca_route("POST", "/_sim/clock", admin_move_clock, takes_body=True),
    alpaca_route("POST", "/_sim/scenario", admin_scenario, takes_body=True),
    alpaca_route("POST", "/_sim/partial_fills", admin_partial_fills, takes_body=True),
    alpaca_route("POST", "/_sim/positions", admin_drift_position, takes_body=True),
    alpaca_route("POST", "/_sim/split", admin_split, takes_body=True),
    alpaca_route("POST", "/_sim/account", admin_account, takes_body=True),
    alpaca_route("POST", "/_sim/rename", admin_rename, takes_body=True),
)
