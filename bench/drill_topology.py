"""The production topology on this machine, for the detection drill: PostgreSQL databases of its own (Dagster's
storage through dagster-postgres, and the trading DB), the code location served over gRPC (`dagster
code-server start`), `dagster-daemon run` and `dagster-webserver` on a gRPC workspace file, the watchdog every
30 s (as the systemd timer runs it), the sim broker behind a small proxy that can misbehave on the wire
(revoked keys, a frozen quote feed, exits accepted but never filled, a positions endpoint failing), and a
local webhook receiver that records every alert as it arrives.

Everything listens on 127.0.0.1; every database it creates is dropped by `close()`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import requests
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WATCHDOG_EVERY = 30.0
PG_SERVER = os.environ.get("DRILL_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DB_PREFIX = "tp_drill"  # databases {prefix}_dagster and {prefix}_trading, created and dropped by the drill


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """The webhook end: every alert payload with the wall time it arrived."""

    def __init__(self) -> None:
        self.alerts: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.alerts.append((time.time(), json.loads(body or b"{}")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/drill"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def since(self, moment: float) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(at, payload) for at, payload in self.alerts if at >= moment]

    def firing_keys(self) -> set[str]:
        """Keys whose latest payload is a firing one."""
        state: dict[str, str] = {}
        with self.lock:
            for _, payload in self.alerts:
                state[payload.get("key", "")] = payload.get("state", "")
        return {key for key, value in state.items() if value == "firing"}


class BrokerProxy:
    """Forwards every request to the sim broker, unless a wire fault is on (`mode`)."""

    MODES: ClassVar[set[str]] = {"", "auth", "positions_500", "quotes_frozen", "exits_unfilled"}

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.mode = ""
        self.frozen: dict[str, Any] = {}
        self.session = requests.Session()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                proxy.relay(self)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _relay

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set_mode(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown proxy mode {mode!r}")
        self.frozen.clear()
        self.mode = mode

    def relay(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0) or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path.split("?")[0]
        mode = self.mode
        if mode == "auth" and not path.startswith("/_sim/"):
            return self._answer(handler, 401, {"code": 40110000, "message": "request is not authorized"})
        if mode == "positions_500" and handler.command == "GET" and path == "/v2/positions":
            return self._answer(handler, 500, {"code": 50010000, "message": "internal server error"})
        if mode == "exits_unfilled" and handler.command == "POST" and path == "/v2/orders":
            body = self._never_filling(body)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length")}
        answer = self.session.request(handler.command, self.sim.url + handler.path, data=body, headers=headers)
        content = answer.content
        if mode == "quotes_frozen" and path == "/v2/stocks/quotes/latest" and answer.status_code == 200:
            content = self._frozen_quotes(content)
        handler.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def _answer(self, handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        content = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def _never_filling(self, body: bytes) -> bytes:
        """A market SELL becomes a limit far above the market: accepted by the broker, never filled."""
        order = json.loads(body or b"{}")
        if (
            order.get("side") == "sell"
            and order.get("type") == "market"
            and order.get("order_class") in (None, "", "simple")
        ):
            quote = self.sim.market.quote(order["symbol"])
            high = (quote.ask if quote else Decimal(100)) * 10
            order.update(type="limit", limit_price=str(high.quantize(Decimal("0.01"))))
        return json.dumps(order).encode()

    def _frozen_quotes(self, content: bytes) -> bytes:
        data = json.loads(content)
        quotes = data.get("quotes", {})
        for symbol, quote in quotes.items():
            quotes[symbol] = self.frozen.setdefault(symbol, quote)
        return json.dumps(data).encode()


class Topology:
    """Start with `start()`, stop and drop everything with `close()`."""

    def __init__(self, work: Path, *, seed: int = 7, n_symbols: int = 600, db_prefix: str = DB_PREFIX) -> None:
        self.work = work
        self.dagster_db, self.trading_db = f"{db_prefix}_dagster", f"{db_prefix}_trading"
        self.seed, self.n_symbols = seed, n_symbols
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Any] = {}
        self.code_port, self.web_port = free_port(), free_port()
        self.workspace = work / "workspace.yaml"
        self.home = work / "dagster_home"
        self._watchdog_stop = threading.Event()
        self.watchdog_runs = 0

    # ---- databases ----

    def _admin(self) -> sa.Engine:
        return sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")

    def _recreate_databases(self, drop_only: bool = False) -> None:
        admin = self._admin()
        with admin.connect() as conn:
            for name in (self.dagster_db, self.trading_db):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                if not drop_only:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()

    @property
    def trading_url(self) -> str:
        return str(sa.make_url(PG_SERVER).set(database=self.trading_db).render_as_string(hide_password=False))

    # ---- environment ----

    def env(self, **extra: str) -> dict[str, str]:
        pg = sa.make_url(PG_SERVER)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "DAGSTER_PG_HOST": pg.host or "127.0.0.1",
            "DAGSTER_PG_USER": pg.username or "postgres",
            "DAGSTER_PG_PASSWORD": pg.password or "",
            "DAGSTER_PG_DB": self.dagster_db,
            "DATABASE_URL": self.trading_url,
            "TRADING_PIPELINE_BROKER": "sim",
            "ALPACA_TRADING_URL": self.proxy.url,
            "ALPACA_DATA_URL": self.proxy.url,
            "TRADING_PIPELINE_ALERT_WEBHOOK_URL": self.receiver.url,
            "TRADING_PIPELINE_DATA_DIR": str(self.work / "data"),
        }
        env.pop("TRADING_MODE", None)
        env.update(extra)
        return env

    # ---- processes ----

    def _spawn(self, name: str, command: list[str], **env: str) -> None:
        log = self.logs.get(name) or open(self.work / f"{name}.log", "a")  # noqa: SIM115 — closed in close()
        self.logs[name] = log
        self.processes[name] = subprocess.Popen(
            command, env=self.env(**env), cwd=self.work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_code_server(self, **env: str) -> None:
        self._spawn(
            "code-server",
            [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(self.code_port), "-m",
             "trading_pipeline.definitions"],
            **env,
        )  # fmt: skip

    def start_daemon(self) -> None:
        self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def start(self) -> None:
        from trading_pipeline.domain.calendar import session_open_now
        from trading_pipeline.sim.server import SimBroker
        from trading_pipeline.store.database import Database
        from trading_pipeline.store.migrate import upgrade

        self.work.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(exist_ok=True)
        shutil.copyfile(ROOT / "deploy" / "dagster.postgres.yaml", self.home / "dagster.yaml")
        self._recreate_databases()
        with Database(self.trading_url) as db:
            upgrade(db)
        import datetime as _dt

        start = session_open_now(_dt.datetime.now(_dt.UTC))
        self.sim = SimBroker(seed=self.seed, n_symbols=self.n_symbols, start=start, realtime=True)
        self.sim.start()
        self.proxy = BrokerProxy(self.sim)
        self.receiver = Receiver()
        workspace = yaml.safe_load((ROOT / "deploy" / "workspace.grpc.yaml").read_text())
        workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=self.code_port)
        self.workspace.write_text(yaml.safe_dump(workspace))
        os.environ.update({k: v for k, v in self.env().items() if k.startswith("DAGSTER_")})
        self.open_positions()
        self.start_code_server()
        self.wait_for_code_server()
        self.start_daemon()
        self._spawn("webserver", [str(BIN / "dagster-webserver"), "-w", str(self.workspace), "-h", "127.0.0.1", "-p",
                                  str(self.web_port)])  # fmt: skip
        threading.Thread(target=self._watchdog_loop, daemon=True).start()

    def wait_for_code_server(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = subprocess.run(
                [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(self.code_port)],
                env=self.env(),
                capture_output=True,
            )
            if done.returncode == 0:
                return
            time.sleep(1)
        raise RuntimeError(f"the code server did not answer in {timeout:.0f} s: see {self.work / 'code-server.log'}")

    def _watchdog_loop(self) -> None:
        log = open(self.work / "watchdog.log", "a")  # noqa: SIM115 — lives as long as the loop
        while not self._watchdog_stop.is_set():
            started = time.monotonic()
            subprocess.run(
                [str(BIN / "trading-pipeline"), "watchdog", "--workspace", str(self.workspace)],
                env=self.env(),
                cwd=self.work,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=120,
            )
            self.watchdog_runs += 1
            self._watchdog_stop.wait(max(0.0, WATCHDOG_EVERY - (time.monotonic() - started)))
        log.close()

    def open_positions(self, count: int = 8) -> None:
        """The day's universe and the strategy's entries, through the product's own steps (as the trading-day
        job would at the open), so the stop-loss runs have positions to protect."""
        from trading_pipeline.broker.alpaca import AlpacaBroker
        from trading_pipeline.domain.calendar import NEW_YORK
        from trading_pipeline.resources.strategy import StrategyConfig
        from trading_pipeline.steps.entries import open_entries
        from trading_pipeline.steps.universe import build_universe
        from trading_pipeline.store.database import Database

        broker = AlpacaBroker("drill", "drill", trading_url=self.sim.url, data_url=self.sim.url, timeout=10)
        config = StrategyConfig(max_open_positions=count)
        now = self.sim.market.now
        day = now.astimezone(NEW_YORK).date()
        with Database(self.trading_url) as db:
            build_universe(db, broker, trading_date=day, sample_size=200)
            open_entries(
                db,
                broker,
                strategy=config.load().strategy,
                limits=config.limits(),
                trading_date=day,
                run_id=None,
                now=now,
            )
        broker.close()

    def graphql(self, query: str) -> dict[str, Any]:
        response = requests.post(f"http://127.0.0.1:{self.web_port}/graphql", json={"query": query}, timeout=30)
        return response.json()

    def close(self) -> None:
        self._watchdog_stop.set()
        for name in list(self.processes):
            self.stop(name)
        for log in self.logs.values():
            log.close()
        for server in (getattr(self, "proxy", None), getattr(self, "receiver", None)):
            if server is not None:
                server.server.shutdown()
        if getattr(self, "sim", None) is not None:
            self.sim.stop()
        self._recreate_databases(drop_only=True)
