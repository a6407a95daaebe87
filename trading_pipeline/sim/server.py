"""The local Alpaca-compatible paper broker: an HTTP server over the simulated market.

It speaks the subset of Alpaca's trading API v2 and market-data API v2 the pipeline uses, on one host
root, so alpaca-py's own `TradingClient` and `StockHistoricalDataClient` are pointed at it with
`url_override` and the production code path runs unchanged with no keys and no network.

Why the standard library's `ThreadingHTTPServer`: it needs no new dependency, handles keep-alive
(HTTP/1.1) and concurrent clients with one thread per connection, and gives direct access to the socket,
which fault injection needs (hang a request, reset a connection after the order was accepted). The
market is guarded by one lock, so throughput is not the point; fidelity is.

In-process use:

    with SimBroker(seed=7, n_symbols=500, start=datetime(2026, 11, 24, 15, tzinfo=UTC)) as sim:
        TradingClient("k", "s", url_override=sim.url)
        sim.market.gap("SPY", -15); sim.faults.fail_next("429"); sim.counters()

As a process: `serve(port=8765, seed=7)` (wired as `trading-pipeline sim-broker`), driven through the
`/_sim/` admin routes: faults, counters, clock, scenarios.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from trading_pipeline.sim.errors import (
    CODE_INTERNAL,
    CODE_MALFORMED_BODY,
    CODE_RATE_LIMITED,
    CODE_UNAUTHORIZED,
    SimApiError,
)
from trading_pipeline.sim.faults import FaultConfig, FaultInjector
from trading_pipeline.sim.market import DEFAULT_INITIAL_CASH, DEFAULT_N_SYMBOLS, DEFAULT_SEED, Market
from trading_pipeline.sim.routes import Request, Response, Route, match

log = logging.getLogger(__name__)

DUMMY_API_KEY = "sim-key-id"
DUMMY_SECRET_KEY = "sim-secret-key"
MAX_BODY_BYTES = 1_000_000


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Do not wait for handler threads on close: a request sleeping in a fault must not delay shutdown.
    block_on_close = False
    sim: SimBroker


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add ~40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sim-broker %s - %s", self.address_string(), format % args)

    # ---- one request ----

    def _handle(self, method: str) -> None:
        sim = self.server.sim
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        raw_body = self._read_body()
        if raw_body is None:
            return
        route, path_params = match(method, split.path)
        name = route.name if route is not None else f"{method} <unmatched>"
        fault = sim.faults.decide(name)
        config = sim.faults.config
        if config.latency_ms and not (route is not None and route.is_admin and config.exempt_admin):
            sim.faults.stopping.wait(config.latency_ms / 1000.0)
        if fault == "timeout":
            # Hang longer than any sensible client timeout, then hang up without an answer.
            sim.faults.stopping.wait(config.timeout_seconds)
            self._drop_connection()
            return
        data_api = route.data_api if route is not None else split.path.startswith("/v2/stocks")
        if fault in ("429", "500", "503"):
            self._send_fault(fault, data_api, config.retry_after_seconds)
            return
        response = self._respond(sim, route, path_params, query, raw_body, data_api)
        if fault == "drop":
            self._drop_connection()
            return
        if fault == "drop_502":
            self._send(502, b"", "text/plain")
            return
        if fault == "504":  # the gateway gave up; the request behind it went through
            self._send(504, b"<html><body><h1>504 Gateway Time-out</h1></body></html>", "text/html")
            return
        self._send_json(response)

    def _respond(
        self,
        sim: SimBroker,
        route: Route | None,
        path_params: dict[str, str],
        query: dict[str, str],
        raw_body: bytes,
        data_api: bool,
    ) -> Response:
        if route is None:
            return Response(
                404, {"code": 40410000, "message": "endpoint not found"} if not data_api else {"message": "Not Found"}
            )
        if not route.is_admin and not self._authorized():
            body = (
                {"message": "unauthorized."}
                if data_api
                else {"code": CODE_UNAUTHORIZED, "message": "request is not authorized"}
            )
            return Response(401, body)
        body: Any = None
        if route.takes_body and raw_body:
            try:
                body = json.loads(raw_body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return Response(400, {"code": CODE_MALFORMED_BODY, "message": "request body format is invalid"})
        try:
            sim.sync_clock()
            return route.handler(sim, Request(query=query, path_params=path_params, body=body))
        except SimApiError as error:
            return Response(error.status, error.body())
        except Exception:
            log.exception("sim-broker: %s %s failed", route.method, route.template)
            return Response(500, {"code": CODE_INTERNAL, "message": "internal server error occurred"})

    def _authorized(self) -> bool:
        # Any non-empty pair is accepted: the simulator has no real accounts, only the shape of auth.
        return bool(self.headers.get("APCA-API-KEY-ID")) and bool(self.headers.get("APCA-API-SECRET-KEY"))

    # ---- plumbing ----

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._send_json(Response(400, {"code": CODE_MALFORMED_BODY, "message": "invalid Content-Length"}))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _send_fault(self, fault: str, data_api: bool, retry_after: int) -> None:
        if fault == "429":
            body = (
                {"message": "too many requests."}
                if data_api
                else {"code": CODE_RATE_LIMITED, "message": "rate limit exceeded"}
            )
            self._send_json(Response(429, body, {"Retry-After": str(retry_after)}))
        elif fault == "500":
            body = (
                {"message": "internal server error"}
                if data_api
                else {"code": CODE_INTERNAL, "message": "internal server error occurred"}
            )
            self._send_json(Response(500, body))
        else:  # what a load balancer sends when the service behind it is gone: not JSON
            self._send(503, b"upstream connect error or disconnect/reset before headers", "text/plain")

    def _send_json(self, response: Response) -> None:
        if response.body is None:
            self._send(response.status, b"", None, response.headers)
            return
        payload = json.dumps(response.body, separators=(",", ":"), default=_json_default).encode()
        self._send(response.status, payload, "application/json; charset=UTF-8", response.headers)

    def _send(
        self, status: int, payload: bytes, content_type: str | None, headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if payload:
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop_connection(self) -> None:
        """Close the socket without a response: the client sees a reset / remote disconnect."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class SimBroker:
    """The simulator as a context manager: a `Market`, a fault injector and a server on 127.0.0.1.

    `realtime` (default: True when no `start` is given) makes the simulated clock follow the wall clock,
    `speed` times faster, advanced by a daemon ticker thread and before every request; otherwise the
    clock moves only through `sim.market.advance(...)` / `set_time(...)` or the `/_sim/clock` route.
    """

    def __init__(
        self,
        *,
        seed: int = DEFAULT_SEED,
        n_symbols: int = DEFAULT_N_SYMBOLS,
        start: datetime | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultConfig | None = None,
        realtime: bool | None = None,
        speed: float = 1.0,
        tick_seconds: float = 1.0,
        initial_cash: Decimal = DEFAULT_INITIAL_CASH,
        market: Market | None = None,
    ) -> None:
        self.market = (
            market
            if market is not None
            else Market(seed=seed, n_symbols=n_symbols, start=start, initial_cash=initial_cash)
        )
        self.faults = FaultInjector(faults or FaultConfig(seed=seed))
        self.realtime = (start is None and market is None) if realtime is None else realtime
        self.speed = speed
        self.tick_seconds = tick_seconds
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._wall_origin = time.monotonic()
        self._sim_origin = self.market.now

    # ---- lifecycle ----

    def start(self) -> SimBroker:
        if self._server is not None:
            return self
        self.faults.stopping.clear()
        server = _Server((self._host, self._port), _Handler)
        server.sim = self
        self._server = server
        serving = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sim-broker-http", daemon=True
        )
        serving.start()
        self._threads = [serving]
        if self.realtime:
            self._wall_origin = time.monotonic()
            self._sim_origin = self.market.now
            ticker = threading.Thread(target=self._tick_forever, name="sim-broker-clock", daemon=True)
            ticker.start()
            self._threads.append(ticker)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.faults.stopping.set()  # wake requests sleeping in latency/timeout faults, and the ticker
        server.shutdown()
        server.server_close()
        for thread in self._threads:
            thread.join(timeout=2.0)
        self._threads = []

    def __enter__(self) -> SimBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- clock ----

    def sync_clock(self) -> None:
        """In realtime mode, bring the simulated clock up to the wall clock (times `speed`)."""
        if not self.realtime:
            return
        elapsed = (time.monotonic() - self._wall_origin) * self.speed
        target = self._sim_origin + timedelta(seconds=elapsed)
        if target > self.market.now:
            self.market.advance_to(target)

    def _tick_forever(self) -> None:
        while not self.faults.stopping.wait(self.tick_seconds):
            try:
                self.sync_clock()
            except Exception:  # keep ticking: one bad step must not freeze the market
                log.exception("sim-broker clock tick failed")

    # ---- what clients need ----

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SimBroker is not running; use `with SimBroker(...) as sim:` or call start()")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Host root for alpaca-py's url_override (no /v2): both the trading and the data client use it."""
        return f"http://{self._host}:{self.port}"

    def env(self, api_key: str = DUMMY_API_KEY, secret_key: str = DUMMY_SECRET_KEY) -> dict[str, str]:
        """Environment variables that point the pipeline at this simulator."""
        return {
            "TRADING_PIPELINE_BROKER": "alpaca",
            "TRADING_MODE": "paper",
            "ALPACA_TRADING_URL": self.url,
            "ALPACA_DATA_URL": self.url,
            "ALPACA_API_KEY": api_key,
            "ALPACA_SECRET_KEY": secret_key,
        }

    def counters(self) -> dict[str, dict[str, int]]:
        return self.faults.counters()

    def requests(self, route: str) -> int:
        """How many requests `route` ("GET /v2/stocks/quotes/latest") received."""
        return self.faults.requests(route)

    def reset_counters(self) -> None:
        self.faults.reset_counters()


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = DEFAULT_SEED,
    n_symbols: int = DEFAULT_N_SYMBOLS,
    *,
    start: datetime | None = None,
    speed: float = 1.0,
    faults: FaultConfig | None = None,
) -> None:
    """Run the simulator until Ctrl-C, printing its URL and how to point the pipeline at it."""
    sim = SimBroker(
        seed=seed, n_symbols=n_symbols, start=start, host=host, port=port, faults=faults, realtime=True, speed=speed
    )
    with sim:
        clock = sim.market.clock()
        lines = [
            f"sim-broker: Alpaca-compatible paper broker on {sim.url} (seed {seed}, {n_symbols} symbols)",
            f"  simulated time {clock.timestamp.astimezone(UTC).isoformat()} — market "
            f"{'open' if clock.is_open else 'closed'}, speed x{speed:g}",
            "  point the pipeline at it with:",
            *[f"    export {key}={value}" for key, value in sim.env().items()],
            f"  admin: {sim.url}/_sim/faults  {sim.url}/_sim/counters  {sim.url}/_sim/clock  "
            f"POST {sim.url}/_sim/scenario",
            "  Ctrl-C to stop",
        ]
        print("\n".join(lines), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("sim-broker: stopped", flush=True)
