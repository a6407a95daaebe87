"""`trading-pipeline demo`, `sim-broker` and `soak`: the product driven against the local sim broker."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from trading_pipeline.cli.common import EXIT_FAILED, EXIT_OK, optional_day
from trading_pipeline.settings import Settings, SettingsError


def _demo(args: argparse.Namespace) -> int:
    from trading_pipeline.harness.demo import Demo, DemoOptions
    from trading_pipeline.harness.demo_report import render_report

    settings = Settings.from_env()
    session_date = optional_day(args.date)
    if args.minutes < 2:
        raise SettingsError(f"--minutes must be at least 2 (one stop-loss run), got {args.minutes}")
    options = DemoOptions(
        data_dir=settings.data_dir,
        seed=args.seed if args.seed is not None else settings.sim_seed,
        minutes=args.minutes,
        full_day=args.full_day,
        session_date=session_date,
        protective_orders=not args.no_protective_orders,
        strategy=args.strategy or settings.strategy,
        strategy_params=args.strategy_params if args.strategy_params is not None else settings.strategy_params,
        env_file=Path(".env"),
    )
    report = Demo(options).run()
    print(render_report(report))
    return EXIT_OK if report.healthy else EXIT_FAILED


def _sim_start(session_now: bool):  # type: ignore[no-untyped-def]
    """--session-now: the simulated clock starts inside a session, so the market is open now, whatever the
    hour, and the daemon's real schedules and sensors sweep against it (the broker's clock is the one clock)."""
    if not session_now:
        return None
    from datetime import UTC, datetime

    from trading_pipeline.domain.calendar import NEW_YORK, session_open_now

    start = session_open_now(datetime.now(UTC))
    print(
        f"sim-broker: --session-now: the market is open now, replaying {start.astimezone(NEW_YORK):%A %Y-%m-%d} "
        f"from {start.astimezone(NEW_YORK):%H:%M ET} at wall-clock speed"
    )
    return start


def _sim_broker(args: argparse.Namespace) -> int:
    from trading_pipeline.sim.server import serve

    settings = Settings.from_env()
    serve(
        host="127.0.0.1",
        port=args.port,
        seed=args.seed if args.seed is not None else settings.sim_seed,
        n_symbols=args.symbols,
        speed=args.speed,
        start=_sim_start(args.session_now),
        rate_limit=_sim_rate_limit(args.rate_limit),
    )
    return EXIT_OK


def _sim_rate_limit(per_minute: int | None) -> Any:
    """The sim's RateLimitConfig for `--rate-limit` (None: not enforced); imported here, as the sim is."""
    from trading_pipeline.sim.rate_limit import RateLimitConfig

    if per_minute is None:
        return None
    if per_minute < 1:
        raise SystemExit("sim-broker: --rate-limit must be at least 1 request per minute")
    return RateLimitConfig(trading=per_minute, data=per_minute)


def _ui(args: argparse.Namespace) -> int:
    """The sim broker (in this process) and `dagster dev` (the webserver and the daemon) together, with the
    `.env` the demo wrote: the UI shows the demo's runs, and every sensor can reach a broker."""
    import os
    import subprocess
    import sys

    from trading_pipeline.sim.server import SimBroker

    settings = Settings.from_env()
    sim = SimBroker(seed=settings.sim_seed, port=args.sim_port, start=_sim_start(args.session_now), realtime=True)
    with sim:
        print(f"ui: sim broker on {sim.url}; Dagster UI on http://127.0.0.1:{args.port}", flush=True)
        dagster = Path(sys.executable).with_name("dagster")
        command = [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.port)]
        # The broker URL is this process's sim (a .env does not name one, so this is what the location sees).
        env = {
            **os.environ,
            "TRADING_PIPELINE_BROKER": "sim",
            "ALPACA_TRADING_URL": sim.url,
            "ALPACA_DATA_URL": sim.url,
        }
        process = subprocess.Popen(command, env=env)
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.terminate()
            return process.wait()


def _soak(args: argparse.Namespace) -> int:
    from trading_pipeline.harness.soak import run_soak
    from trading_pipeline.harness.soak_report import render_report

    # Every injected fault would print a retry warning; the table below is what the soak is for. Restored
    # after, so a caller in the same process (a test) keeps its own logging.
    broker_log = logging.getLogger("trading_pipeline.broker")
    level = broker_log.level
    broker_log.setLevel(logging.ERROR)
    try:
        report = run_soak(
            args.minutes,
            args.fault_rate,
            args.seed,
            database_url=args.database_url,
            positions=args.positions,
            progress=lambda text: print(text, flush=True),
        )
    finally:
        broker_log.setLevel(level)
    print(render_report(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a simulated trading session through Dagster against the local sim broker, then report outcomes",
    )
    demo.add_argument("--minutes", type=int, default=60, help="simulated minutes after the open (default 60)")
    demo.add_argument("--full-day", action="store_true", help="run the whole session (≈195 stop-loss runs)")
    demo.add_argument(
        "--date", help="NYSE session to replay, YYYY-MM-DD (default 2026-11-24: the same report whatever the day)"
    )
    demo.add_argument("--seed", type=int, help="sim market seed (default TRADING_PIPELINE_SIM_SEED or 7)")
    demo.add_argument(
        "--no-protective-orders",
        action="store_true",
        help="plain market entries: only the pipeline's sweep protects positions (the first line of defence)",
    )
    demo.add_argument(
        "--strategy",
        help="entry strategy: a built-in or entry-point name, or package.module:attribute "
        "(default TRADING_PIPELINE_STRATEGY or momentum)",
    )
    demo.add_argument(
        "--strategy-params",
        help="the strategy's parameters as a JSON object (default TRADING_PIPELINE_STRATEGY_PARAMS)",
    )
    demo.set_defaults(handler=_demo)

    sim = commands.add_parser("sim-broker", help="serve the local Alpaca-compatible paper broker on 127.0.0.1")
    sim.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    sim.add_argument("--seed", type=int, help="market seed (default TRADING_PIPELINE_SIM_SEED or 7)")
    sim.add_argument("--symbols", type=int, default=5000, help="universe size (default 5000)")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)")
    sim.add_argument(
        "--session-now",
        action="store_true",
        help="start the simulated clock inside an NYSE session so the market is open now, at any hour",
    )
    sim.add_argument(
        "--rate-limit",
        type=int,
        metavar="N",
        help="enforce Alpaca's request limit: N requests per minute per key on each API, 429 beyond it, "
        "X-RateLimit-* headers on every answer (Alpaca's is 200; default: not enforced)",
    )
    sim.set_defaults(handler=_sim_broker)

    ui = commands.add_parser(
        "ui", help="the sim broker and `dagster dev` (UI + daemon) together, on the demo's DB and instance (.env)"
    )
    ui.add_argument("--port", type=int, default=3000, help="Dagster UI port on 127.0.0.1 (default 3000)")
    ui.add_argument("--sim-port", type=int, default=8765, help="sim broker port on 127.0.0.1 (default 8765)")
    ui.add_argument("--session-now", action="store_true", help="the sim's market is open now (see sim-broker)")
    ui.set_defaults(handler=_ui)

    soak = commands.add_parser(
        "soak",
        help="stop-loss sweeps for N simulated minutes against the sim broker failing a share of requests; "
        "prints the invariant table (exit 0 only if nothing was lost or doubled)",
    )
    soak.add_argument("--minutes", type=int, default=60, help="simulated minutes after the open (default 60)")
    soak.add_argument("--fault-rate", type=float, default=0.2, help="share of broker requests failed (default 0.2)")
    soak.add_argument("--seed", type=int, default=7, help="seed of the market, the script and the faults (default 7)")
    soak.add_argument("--positions", type=int, default=30, help="open positions kept by the script (default 30)")
    soak.add_argument(
        "--database-url", help="an empty trading DB to use (default: a fresh SQLite file in a temp folder)"
    )
    soak.set_defaults(handler=_soak)
