"""One route of the simulator as an ASGI endpoint: what every request goes through around its handler.

In order: the body (its declared size; the body itself, for a route that takes one); Alpaca's rate limit
(`rate_limit.py`: over the quota, a counted 429 after the latency, before any fault; within it, the
X-RateLimit-* headers on whatever answer follows); the request counter and the fault decision (`faults.py`,
by route name such as "GET /v2/stocks/quotes/latest"); added latency; the
faults answered instead of the route (timeout, 429, 500, 503); Alpaca's auth; the JSON body; the handler
(under the market lock); and the faults answered after the route has done its work (drop, drop_502, 504) —
the "the order was accepted but the answer never arrived" cases.

Two of the faults answer nothing at all (`timeout` after a hang, `drop` after the work): ASGI has no message
for "close the connection without a response", so the server offers one as an extension, `HANG_UP`
(see `app.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from trading_pipeline.sim.api import AlpacaJSON, Simulator
from trading_pipeline.sim.errors import (
    CODE_INTERNAL,
    CODE_MALFORMED_BODY,
    CODE_NOT_FOUND,
    CODE_RATE_LIMITED,
    CODE_UNAUTHORIZED,
    SimApiError,
)
from trading_pipeline.sim.faults import ADMIN_PREFIX
from trading_pipeline.sim.rate_limit import DATA, TRADING, Verdict

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000
DATA_API_PREFIXES = ("/v2/stocks", "/v1/corporate-actions")  # errors there carry no "code"
# scope["extensions"][HANG_UP]() closes the client's connection without a response.
HANG_UP = "trading_pipeline.sim.hang_up"
GATEWAY_TIMEOUT_PAGE = b"<html><body><h1>504 Gateway Time-out</h1></body></html>"
UPSTREAM_GONE = b"upstream connect error or disconnect/reset before headers"

Handler = Callable[..., Response]  # (sim, request) or, for a route that takes a body, (sim, request, body)


class AlpacaEndpoint:
    """The ASGI app behind one route. `handler=None` is the catch-all: Alpaca's 404 for any other path."""

    def __init__(self, method: str | None, template: str | None, handler: Handler | None, *, takes_body: bool):
        self.route_name = f"{method} {template}" if method and template else None
        self.handler = handler
        self.takes_body = takes_body
        self.is_admin = template is not None and template.startswith(ADMIN_PREFIX)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = await self._serve(scope, receive, send)
        # One DEBUG line per request, as the sim has always logged (never headers: they carry the keys).
        client = (scope.get("client") or ("-",))[0]
        log.debug('sim-broker %s "%s %s" %s', client, scope["method"], scope["path"], outcome)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> int | str:
        """Answer one request; return its status, or what happened instead of one."""
        request = Request(scope, receive)
        sim: Simulator = request.app.state.sim
        stopping: asyncio.Event = request.app.state.stopping
        if _declared_length(request) is None:
            # Refused before it counts, and the connection closes: the body that may follow is not read.
            await _refuse_body("invalid Content-Length")(scope, receive, send)
            return 400
        raw_body = b""
        if self.takes_body:
            # Read before any latency or fault, as a server does: a POST whose sender dies while the request
            # is held still lands (the crash-recovery tests kill a client with its order in flight).
            try:
                raw_body = await _read_body(request)
            except ClientDisconnect:
                return "client gone"  # before its body arrived: nothing to process, nobody to answer
            if raw_body is None:
                await _refuse_body("request body is too large")(scope, receive, send)
                return 400
        route = self.route_name or f"{request.method} <unmatched>"
        data_api = scope["path"].startswith(DATA_API_PREFIXES)
        quota = Verdict(True, {})
        if not self.is_admin:
            quota = sim.rate_limit.check(DATA if data_api else TRADING, request.headers.get("APCA-API-KEY-ID"), route)
        fault: str | None = None
        if quota.allowed:
            fault = sim.faults.decide(route)
        else:
            sim.faults.count(route)  # refused at the edge: counted, but no fault is drawn for it
        config = sim.faults.config
        if config.latency_ms and not (self.is_admin and config.exempt_admin):
            await _pause(stopping, config.latency_ms / 1000.0)
        if not quota.allowed:
            response = _rate_limited(data_api, quota.headers)
            await response(scope, receive, send)
            return response.status_code
        if fault == "timeout":
            # Hang longer than any sensible client timeout, then hang up without an answer.
            await _pause(stopping, config.timeout_seconds)
            await hang_up(scope, receive)
            return "timeout: hung up"
        if fault in ("429", "500", "503"):
            response = _fault_response(fault, data_api, config.retry_after_seconds)
            response.headers.update(quota.headers)
            await response(scope, receive, send)
            return response.status_code
        response = await self._respond(sim, request, raw_body, data_api)
        if fault == "drop":
            await hang_up(scope, receive)
            return "drop: hung up"
        if fault == "drop_502":
            response = Response(b"", 502, {"Content-Type": "text/plain"})
        elif fault == "504":  # the gateway gave up; the request behind it went through
            response = Response(GATEWAY_TIMEOUT_PAGE, 504, {"Content-Type": "text/html"})
        response.headers.update(quota.headers)
        await response(scope, receive, send)
        return response.status_code

    async def _respond(self, sim: Simulator, request: Request, raw_body: bytes, data_api: bool) -> Response:
        if self.handler is None:
            body = {"message": "Not Found"} if data_api else {"code": CODE_NOT_FOUND, "message": "endpoint not found"}
            return AlpacaJSON(body, 404)
        if not self.is_admin and not _authorized(request):
            body = (
                {"message": "unauthorized."}
                if data_api
                else {"code": CODE_UNAUTHORIZED, "message": "request is not authorized"}
            )
            return AlpacaJSON(body, 401)
        arguments: list[Any] = [sim, request]
        if self.takes_body:
            try:
                arguments.append(json.loads(raw_body) if raw_body else None)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return AlpacaJSON({"code": CODE_MALFORMED_BODY, "message": "request body format is invalid"}, 400)
        lock = sim.market.lock
        if lock.acquire(blocking=False):
            # The market is free: answer here on the event loop. A hop to Starlette's thread pool for every
            # request costs more server CPU than all the rest (measured ~1.8x per GET /v2/account). The loop
            # never waits for the lock: when the clock ticker or a test holds it, the handler waits in the pool.
            try:
                return self._run_handler(*arguments)
            finally:
                lock.release()
        return await run_in_threadpool(self._run_handler, *arguments)

    def _run_handler(self, sim: Simulator, *arguments: Any) -> Response:
        assert self.handler is not None
        try:
            sim.sync_clock()
            return self.handler(sim, *arguments)
        except SimApiError as error:
            return AlpacaJSON(error.body(), error.status)
        except Exception:
            log.exception("sim-broker: %s failed", self.route_name)
            return AlpacaJSON({"code": CODE_INTERNAL, "message": "internal server error occurred"}, 500)


def alpaca_route(method: str, template: str, handler: Handler, *, takes_body: bool = False) -> Route:
    """A Starlette route for one Alpaca endpoint; its name ("GET /v2/account") is what faults and counters use."""
    endpoint = AlpacaEndpoint(method, template, handler, takes_body=takes_body)
    return Route(template, endpoint, methods=[method], name=f"{method} {template}")


def unmatched_route() -> Route:
    """Last in the table: every other method and path gets Alpaca's 404 (counted as "<METHOD> <unmatched>")."""
    return Route("/{path:path}", AlpacaEndpoint(None, None, None, takes_body=False), name="<unmatched>")


async def hang_up(scope: Scope, receive: Receive) -> None:
    """Close the connection without a response: the client sees a reset / remote disconnect."""
    close = scope.get("extensions", {}).get(HANG_UP)
    if close is None:
        raise RuntimeError("the sim's faults need a server that offers the hang-up extension (see sim/app.py)")
    close()
    # Wait until the server has seen the connection go; returning earlier, uvicorn would answer a 500 for us.
    while (await receive())["type"] != "http.disconnect":
        pass


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep for a fault, waking at once when the server stops (stop() must not wait for a hanging request)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stopping.wait()


def _rate_limited(data_api: bool, headers: dict[str, str]) -> Response:
    """Alpaca's answer over the quota: its 429 body, with the quota's headers (Remaining 0, the Reset)."""
    if data_api:
        return AlpacaJSON({"message": "too many requests."}, 429, headers)
    return AlpacaJSON({"code": CODE_RATE_LIMITED, "message": "rate limit exceeded"}, 429, headers)


def _fault_response(fault: str, data_api: bool, retry_after: int) -> Response:
    if fault == "429":
        body = (
            {"message": "too many requests."}
            if data_api
            else {"code": CODE_RATE_LIMITED, "message": "rate limit exceeded"}
        )
        return AlpacaJSON(body, 429, {"Retry-After": str(retry_after)})
    if fault == "500":
        body = (
            {"message": "internal server error"}
            if data_api
            else {"code": CODE_INTERNAL, "message": "internal server error occurred"}
        )
        return AlpacaJSON(body, 500)
    # 503: what a load balancer sends when the service behind it is gone: not JSON
    return Response(UPSTREAM_GONE, 503, {"Content-Type": "text/plain"})


def _refuse_body(message: str) -> Response:
    return AlpacaJSON({"code": CODE_MALFORMED_BODY, "message": message}, 400, {"Connection": "close"})


def _authorized(request: Request) -> bool:
    # Any non-empty pair is accepted: the simulator has no real accounts, only the shape of auth.
    return bool(request.headers.get("APCA-API-KEY-ID")) and bool(request.headers.get("APCA-API-SECRET-KEY"))


def _declared_length(request: Request) -> int | None:
    """The Content-Length (0 when absent); None when it is not a number or over the limit."""
    try:
        length = int(request.headers.get("Content-Length") or "0")
    except ValueError:
        return None
    return length if 0 <= length <= MAX_BODY_BYTES else None


async def _read_body(request: Request) -> bytes | None:
    """The body, or None past MAX_BODY_BYTES (a chunked body declares no length up front)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
