"""Alpaca's trading API v2 as the simulator serves it: account, clock, calendar, assets, positions, orders.

Handlers return Alpaca's JSON shapes (`wire.py`) and raise Alpaca's errors (`SimApiError`); the route table
at the bottom names each route as faults and counters know it ("POST /v2/orders").
"""

from __future__ import annotations

from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trading_pipeline.sim import wire
from trading_pipeline.sim.api import AlpacaJSON, Simulator, flag
from trading_pipeline.sim.endpoint import alpaca_route
from trading_pipeline.sim.errors import CODE_NOT_FOUND, SimApiError, invalid
from trading_pipeline.sim.order_listing import parse_order_query, select_orders


def get_account(sim: Simulator, request: Request) -> Response:
    with sim.market.lock:
        return AlpacaJSON(wire.account_json(sim.market))


def get_clock(sim: Simulator, request: Request) -> Response:
    return AlpacaJSON(wire.clock_json(sim.market.clock()))


def get_calendar(sim: Simulator, request: Request) -> Response:
    q = request.query_params
    sessions = sim.market.sessions
    try:
        start = date.fromisoformat(q["start"][:10]) if q.get("start") else sessions.days[0]
        end = date.fromisoformat(q["end"][:10]) if q.get("end") else sessions.days[-1]
    except ValueError:
        raise invalid("invalid start or end: expected YYYY-MM-DD") from None
    return AlpacaJSON([wire.calendar_json(sim.market, i) for i in sessions.indices_between(start, end)])


def get_assets(sim: Simulator, request: Request) -> Response:
    q = request.query_params
    status = q.get("status") or None
    asset_class = q.get("asset_class") or "us_equity"
    exchange = q.get("exchange") or None
    if status not in (None, "active", "inactive"):
        raise invalid(f"invalid status: {status!r}")
    if asset_class != "us_equity":
        return AlpacaJSON([])
    assets = [
        wire.asset_json(asset)
        for asset in sim.market.assets
        if (status is None or asset.status == status) and (exchange is None or asset.exchange == exchange)
    ]
    return AlpacaJSON(assets)


def get_asset(sim: Simulator, request: Request) -> Response:
    key = request.path_params["symbol"]
    asset = sim.market.asset(key)
    if asset is None:
        asset = next((a for a in sim.market.assets if a.id == key), None)
    if asset is None:
        raise SimApiError(404, "asset not found", CODE_NOT_FOUND)
    return AlpacaJSON(wire.asset_json(asset))


def get_positions(sim: Simulator, request: Request) -> Response:
    listing = sim.faults.config.positions_listing  # a listing fault (faults.py): [] or another account's book
    with sim.market.lock:
        if listing == "empty":
            return AlpacaJSON([])
        if listing == "foreign":
            return AlpacaJSON(wire.foreign_positions_json(sim.market))
        positions = sorted(sim.market.book.positions.values(), key=lambda p: p.symbol)
        return AlpacaJSON([wire.position_json(sim.market, p) for p in positions])


def get_position(sim: Simulator, request: Request) -> Response:
    with sim.market.lock:
        position = sim.market.book.position(request.path_params["symbol"])
        return AlpacaJSON(wire.position_json(sim.market, position))


def close_position(sim: Simulator, request: Request) -> Response:
    market = sim.market
    with market.lock:
        if request.query_params.get("qty") or request.query_params.get("percentage"):
            raise invalid("partial closes (qty/percentage) are not supported by the simulator")
        order = market.book.close_position(request.path_params["symbol"])
        created = wire.order_json(market, order)  # as created: the fill is looked up later, as with Alpaca
        market.book.evaluate()
        return AlpacaJSON(created)


def post_order(sim: Simulator, request: Request, body: Any) -> Response:
    market = sim.market
    with market.lock:
        order = market.place_order(body)
        created = wire.order_json(market, order)  # as created: the fill is looked up later, as with Alpaca
        market.book.evaluate()
        return AlpacaJSON(created)


def get_orders(sim: Simulator, request: Request) -> Response:
    query = parse_order_query(request.query_params)
    market = sim.market
    with market.lock:
        orders = select_orders(list(market.book.orders.values()), query)
        seen = [market.book.observe(o, with_legs=query.nested) for o in orders]
        return AlpacaJSON([wire.order_json(market, o, nested=query.nested) for o in seen])


def get_order(sim: Simulator, request: Request) -> Response:
    with sim.market.lock:
        nested = flag(request.query_params, "nested", True)
        order = sim.market.book.observe(sim.market.book.order(request.path_params["order_id"]), with_legs=nested)
        return AlpacaJSON(wire.order_json(sim.market, order, nested=nested))


def get_order_by_client_id(sim: Simulator, request: Request) -> Response:
    client_order_id = request.query_params.get("client_order_id")
    if not client_order_id:
        raise invalid("client_order_id is required")
    with sim.market.lock:
        order = sim.market.book.observe(sim.market.book.order_by_client_id(client_order_id))
        return AlpacaJSON(wire.order_json(sim.market, order))


def replace_order(sim: Simulator, request: Request, body: Any) -> Response:
    """`PATCH /v2/orders/{order_id}`: the new order, as created (`replace.py`); fills are evaluated after."""
    market = sim.market
    with market.lock:
        order = market.replace_order(request.path_params["order_id"], body)
        created = wire.order_json(market, order)
        market.book.evaluate()
        return AlpacaJSON(created)


def cancel_order(sim: Simulator, request: Request) -> Response:
    sim.market.cancel_order(request.path_params["order_id"])
    return Response(status_code=204)


TRADING_ROUTES = (
    alpaca_route("GET", "/v2/account", get_account),
    alpaca_route("GET", "/v2/clock", get_clock),
    alpaca_route("GET", "/v2/calendar", get_calendar),
    alpaca_route("GET", "/v2/assets", get_assets),
    alpaca_route("GET", "/v2/assets/{symbol}", get_asset),
    alpaca_route("GET", "/v2/positions", get_positions),
    alpaca_route("GET", "/v2/positions/{symbol}", get_position),
    alpaca_route("DELETE", "/v2/positions/{symbol}", close_position),
    alpaca_route("POST", "/v2/orders", post_order, takes_body=True),
    alpaca_route("GET", "/v2/orders", get_orders),
    alpaca_route("GET", "/v2/orders:by_client_order_id", get_order_by_client_id),
    alpaca_route("GET", "/v2/orders/{order_id}", get_order),
    alpaca_route("PATCH", "/v2/orders/{order_id}", replace_order, takes_body=True),
    alpaca_route("DELETE", "/v2/orders/{order_id}", cancel_order),
)
