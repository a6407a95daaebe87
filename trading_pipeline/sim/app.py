"""The simulator's HTTP app: Starlette routing over the route table, served by uvicorn on its own thread.

Why Starlette and uvicorn: routing, request parsing, keep-alive, concurrent clients and malformed-HTTP
handling are a web framework's and an HTTP server's job, and both come with dagster-webserver. The sim
keeps only what is Alpaca's (routes, payloads, error codes) and its faults.

One thing neither offers: closing a connection without any response, which the `drop` and `timeout`
faults need (the client must see a reset, not a truncated answer). `HangUpHTTPProtocol` is uvicorn's own
HTTP/1.1 protocol with that one addition, offered to the app as the ASGI extension `endpoint.HANG_UP`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from trading_pipeline.sim.api import Simulator
from trading_pipeline.sim.endpoint import HANG_UP
from trading_pipeline.sim.routes import ROUTES

STARTUP_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0

log = logging.getLogger(__name__)


def build_app(sim: Simulator) -> Starlette:
    app = Starlette(routes=list(ROUTES))
    app.state.sim = sim
    # Set when the server stops, so requests sleeping in a fault wake up at once.
    app.state.stopping = asyncio.Event()
    return app


class HangUpHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP/1.1 protocol (httptools or h11), whose requests can close their connection unanswered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = self.app

        async def app_that_can_hang_up(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[HANG_UP] = self.transport.close
            await app(scope, receive, send)

        self.app = app_that_can_hang_up


class _PromptServer(uvicorn.Server):
    """uvicorn's server, whose main loop wakes as soon as `wake` is set instead of at its next 0.1 s tick:
    tests start and stop many simulators."""

    def __init__(self, config: uvicorn.Config, wake: asyncio.Event) -> None:
        super().__init__(config)
        self._wake = wake

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._wake.wait()


class HttpServer:
    """uvicorn serving `app` on 127.0.0.1 (or `host`) from a daemon thread with its own event loop."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self._app = app
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=HangUpHTTPProtocol,
            ws="none",
            lifespan="off",
            log_config=None,  # leave the process's logging alone
            access_log=False,
            proxy_headers=False,
        )
        self._server = _PromptServer(config, wake=app.state.stopping)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="sim-broker-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:  # uvicorn offers a flag, not an event
            if not self._thread.is_alive():
                raise OSError(f"sim-broker: the HTTP server did not start on port {self._server.config.port}")
            if time.monotonic() > deadline:
                raise TimeoutError("sim-broker: the HTTP server did not start in time")
            time.sleep(0.001)

    def stop(self) -> None:
        """Stop serving: requests sleeping in a fault wake up, in-flight answers are sent, then the thread ends."""
        self._server.should_exit = True  # before the wake-up, so the woken main loop sees it
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._app.state.stopping.set)
        self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
        if self._thread.is_alive():  # a handler still running (a long clock advance): leave it, as a daemon
            log.warning("sim-broker: the HTTP server is still finishing a request after %.0f s", STOP_TIMEOUT_SECONDS)

    @property
    def port(self) -> int:
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=self._server.config.get_loop_factory()) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._server.serve()
