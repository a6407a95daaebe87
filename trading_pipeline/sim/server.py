"""The local Alpaca-compatible paper broker: the simulated market behind an HTTP server.

It speaks the subset of Alpaca's trading API v2 and market-data API v2 the pipeline uses, on one host
root, so alpaca-py's own `TradingClient` and `StockHistoricalDataClient` are pointed at it with
`url_override` and the production code path runs unchanged with no keys and no network. The HTTP side is
Starlette under uvicorn (`app.py`); the market is guarded by one lock, so throughput is not the point;
fidelity is.

In-process use:

    with SimBroker(seed=7, n_symbols=500, start=datetime(2026, 11, 24, 15, tzinfo=UTC)) as sim:
        TradingClient("k", "s", url_override=sim.url)
        sim.market.gap("SPY", -15); sim.faults.fail_next("429"); sim.counters()

As a process: `serve(port=8765, seed=7)` (wired as `trading-pipeline sim-broker`), driven through the
`/_sim/` admin routes: faults, counters, clock, scenarios.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading_pipeline.sim.app import HttpServer, build_app
from trading_pipeline.sim.data_routes import FREE_PLAN_FEEDS
from trading_pipeline.sim.faults import FaultConfig, FaultInjector
from trading_pipeline.sim.market import DEFAULT_INITIAL_CASH, DEFAULT_N_SYMBOLS, DEFAULT_SEED, Market
from trading_pipeline.sim.rate_limit import RateLimitConfig, SimRateLimit

log = logging.getLogger(__name__)

DUMMY_API_KEY = "sim-key-id"
DUMMY_SECRET_KEY = "sim-secret-key"


class SimBroker:
    """The simulator as a context manager: a `Market`, a fault injector and a server on 127.0.0.1.

    `data_feeds`: the market-data feeds the plan includes (default the free plan's: iex only).
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
        data_feeds: tuple[str, ...] = FREE_PLAN_FEEDS,
        rate_limit: RateLimitConfig | None = None,
    ) -> None:
        self.market = (
            market
            if market is not None
            else Market(seed=seed, n_symbols=n_symbols, start=start, initial_cash=initial_cash)
        )
        self.faults = FaultInjector(faults or FaultConfig(seed=seed))
        # The market-data feeds the account's plan includes; the others are the data API's 403 (data_routes.py).
        self.data_feeds = data_feeds
        # Alpaca's request quota: off unless asked for (see sim/rate_limit.py for why).
        self.rate_limit = SimRateLimit(rate_limit)
        self.realtime = (start is None and market is None) if realtime is None else realtime
        self.speed = speed
        self.tick_seconds = tick_seconds
        self._host = host
        self._port = port
        self._server: HttpServer | None = None
        self._ticker: threading.Thread | None = None
        self._wall_origin = time.monotonic()
        self._sim_origin = self.market.now

    # ---- lifecycle ----

    def start(self) -> SimBroker:
        if self._server is not None:
            return self
        self.faults.stopping.clear()
        server = HttpServer(build_app(self), self._host, self._port)
        server.start()
        self._server = server
        if self.realtime:
            self._wall_origin = time.monotonic()
            self._sim_origin = self.market.now
            self._ticker = threading.Thread(target=self._tick_forever, name="sim-broker-clock", daemon=True)
            self._ticker.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.faults.stopping.set()  # wake the ticker
        server.stop()  # wakes requests sleeping in latency/timeout faults, then waits for the rest
        if self._ticker is not None:
            self._ticker.join(timeout=2.0)
            self._ticker = None

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
        return self._server.port

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
    rate_limit: RateLimitConfig | None = None,
) -> None:
    """Run the simulator until Ctrl-C, printing its URL and how to point the pipeline at it."""
    sim = SimBroker(
        seed=seed,
        n_symbols=n_symbols,
        start=start,
        host=host,
        port=port,
        faults=faults,
        realtime=True,
        speed=speed,
        rate_limit=rate_limit,
    )
    try:
        # Ctrl-C may come while the banner is still being written (a client can read it and be done by
        # then): the whole life of the server is inside the try, so it always ends as a clean stop.
        with sim:
            print(_banner(sim, seed, n_symbols, speed), flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("sim-broker: stopped", flush=True)


def _banner(sim: SimBroker, seed: int, n_symbols: int, speed: float) -> str:
    clock = sim.market.clock()
    lines = [
        f"sim-broker: Alpaca-compatible paper broker on {sim.url} (seed {seed}, {n_symbols} symbols)",
        f"  simulated time {clock.timestamp.astimezone(UTC).isoformat()} — market "
        f"{'open' if clock.is_open else 'closed'}, speed x{speed:g}",
        "  point the pipeline at it with:",
        *[f"    export {key}={value}" for key, value in sim.env().items()],
        f"  admin: {sim.url}/_sim/faults  {sim.url}/_sim/counters  {sim.url}/_sim/clock  POST {sim.url}/_sim/scenario",
        "  Ctrl-C to stop",
    ]
    return "\n".join(lines)
