"""`trading-pipeline` command line.

Every command turns the product's own errors (bad settings, unreachable DB, old schema, broker
misconfiguration) into one line on stderr that names the fix, and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from trading_pipeline import __version__
from trading_pipeline.broker.base import ConfigurationError
from trading_pipeline.settings import Settings, SettingsError
from trading_pipeline.store.database import Database, DatabaseError, redact

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

KNOWN_ERRORS: tuple[type[Exception], ...] = (SettingsError, DatabaseError, ConfigurationError)


def _db_upgrade(args: argparse.Namespace) -> int:
    from trading_pipeline.store.migrate import upgrade

    settings = Settings.from_env()
    with Database(settings.database_url) as db:
        before, after = upgrade(db, args.revision)
    where = redact(settings.database_url)
    if before == after:
        print(f"trading DB {where} already at migration {after}")
    else:
        print(f"trading DB {where} upgraded: {before or '(empty)'} → {after}")
    return EXIT_OK


def _db_current(args: argparse.Namespace) -> int:
    from trading_pipeline.store.migrate import current_revision, head_revision

    settings = Settings.from_env()
    with Database(settings.database_url) as db:
        db.check_connection()
        current = current_revision(db)
    head = head_revision()
    state = "up to date" if current == head else "OUT OF DATE — run `trading-pipeline db upgrade`"
    print(f"trading DB {redact(settings.database_url)}: migration {current or '(none)'}, code head {head}: {state}")
    return EXIT_OK if current == head else EXIT_FAILED


def _demo(args: argparse.Namespace) -> int:
    from datetime import date

    from trading_pipeline.demo import Demo, DemoOptions, render_report

    settings = Settings.from_env()
    try:
        session_date = date.fromisoformat(args.date) if args.date else None
    except ValueError:
        raise SettingsError(f"--date must be YYYY-MM-DD, got {args.date!r}") from None
    if args.minutes < 2:
        raise SettingsError(f"--minutes must be at least 2 (one stop-loss run), got {args.minutes}")
    options = DemoOptions(
        data_dir=settings.data_dir,
        seed=args.seed if args.seed is not None else settings.sim_seed,
        minutes=args.minutes,
        full_day=args.full_day,
        session_date=session_date,
        protective_orders=not args.no_protective_orders,
    )
    report = Demo(options).run()
    print(render_report(report))
    return EXIT_OK if report.healthy else EXIT_FAILED


def _sim_broker(args: argparse.Namespace) -> int:
    from trading_pipeline.sim.server import serve

    settings = Settings.from_env()
    serve(
        host="127.0.0.1",
        port=args.port,
        seed=args.seed if args.seed is not None else settings.sim_seed,
        n_symbols=args.symbols,
        speed=args.speed,
    )
    return EXIT_OK


def _dagster_instance():  # type: ignore[no-untyped-def]
    """(instance, None) for DAGSTER_HOME, or (None, why not): unset, or a dagster.yaml that does not load."""
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        return None, "DAGSTER_HOME is not set: point it at the instance the daemon uses"
    try:
        return dg.DagsterInstance.get(), None
    except Exception as exc:  # a malformed dagster.yaml must be a NO-GO, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"cannot load the Dagster instance at DAGSTER_HOME: {first}"


def _open_database(settings: Settings) -> Database | None:
    """The trading DB if reachable and current; else None, with the reason on stderr (health reports it too)."""
    from trading_pipeline.store.migrate import ensure_schema_current

    db = None
    try:
        db = Database(settings.database_url)
        ensure_schema_current(db)
        return db
    except DatabaseError as exc:
        if db is not None:
            db.dispose()
        print(f"trading-pipeline: trading DB unavailable: {exc}", file=sys.stderr)
        return None


@contextmanager
def _instance_and_database(settings: Settings) -> Iterator[tuple[Any, str | None, Database | None]]:
    """(instance, why no instance, trading DB or None) for the health commands; both disposed at the end."""
    instance, instance_problem = _dagster_instance()
    db = _open_database(settings)
    try:
        yield instance, instance_problem, db
    finally:
        if db is not None:
            db.dispose()
        if instance is not None:
            instance.dispose()


def _watchdog(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from trading_pipeline.alerting import AlertDispatcher
    from trading_pipeline.health import HealthItem
    from trading_pipeline.watchdog import WatchdogReport, alert_on, check_health, render

    settings = Settings.from_env()
    with _instance_and_database(settings) as (instance, instance_problem, db):
        dispatcher = AlertDispatcher(
            db,
            webhook_url=os.environ.get("TRADING_PIPELINE_ALERT_WEBHOOK_URL"),
            slack_token=os.environ.get("TRADING_PIPELINE_SLACK_TOKEN"),
            slack_channel=os.environ.get("TRADING_PIPELINE_SLACK_CHANNEL"),
        )
        if instance is None:
            report = WatchdogReport([HealthItem("dagster instance", False, instance_problem or "unavailable")])
        else:
            report = check_health(
                instance,
                now=datetime.now(UTC),
                heartbeat_tolerance=timedelta(seconds=args.heartbeat_tolerance),
                stale_after=timedelta(seconds=args.stale_after),
            )
        if db is None:
            report = WatchdogReport(
                [*report.items, HealthItem("trading DB", False, "unreachable or not migrated (see stderr)")]
            )
        alert_on(report, dispatcher)
        print(render(report))
        return EXIT_OK if report.healthy else EXIT_FAILED


def _preflight(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from decimal import Decimal

    from trading_pipeline.broker.factory import broker_from_settings
    from trading_pipeline.preflight import render, run_preflight

    settings = Settings.from_env()
    with _instance_and_database(settings) as (instance, instance_problem, db):
        report = run_preflight(
            now=datetime.now(UTC),
            settings=settings,
            instance=instance,
            instance_problem=instance_problem,
            db=db,
            broker_factory=lambda: broker_from_settings(settings),
            expect_halted=args.expect_halted,
            min_buying_power=Decimal(str(args.min_buying_power)),
        )
        print(render(report))
        return EXIT_OK if report.go else EXIT_FAILED


def _set_halted(args: argparse.Namespace, halted: bool) -> int:
    import getpass

    from trading_pipeline.store.alerts_repository import set_trading_state
    from trading_pipeline.store.migrate import ensure_schema_current

    if not args.reason.strip():
        raise SettingsError("--reason must say why (it is recorded with who and when)")
    settings = Settings.from_env()
    with Database(settings.database_url) as db:
        ensure_schema_current(db)
        state = set_trading_state(db, halted=halted, actor=args.actor or getpass.getuser(), reason=args.reason)
    word = "HALTED: no new entries; stop-loss sweeps keep protecting open positions" if halted else "trading resumed"
    print(f"{word} (by {state.actor} at {state.changed_at:%Y-%m-%d %H:%M:%S} UTC: {state.reason})")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, date, datetime

    from trading_pipeline.domain.calendar import NEW_YORK
    from trading_pipeline.status import build_status, render_status

    settings = Settings.from_env()
    now = datetime.now(UTC)
    try:
        day = date.fromisoformat(args.date) if args.date else now.astimezone(NEW_YORK).date()
    except ValueError:
        raise SettingsError(f"--date must be YYYY-MM-DD, got {args.date!r}") from None
    from trading_pipeline.checks.registry import ALL_SPECS

    with _instance_and_database(settings) as (instance, instance_problem, db):
        report = build_status(
            now=now,
            day=day,
            instance=instance,
            instance_problem=instance_problem,
            db=db,
            db_problem="unreachable or not migrated (see stderr)",
            check_specs=ALL_SPECS,
        )
        print(json.dumps(report.as_json(), indent=2) if args.json else render_status(report))
        return EXIT_OK if report.healthy else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trading-pipeline",
        description="A Dagster-orchestrated paper-trading pipeline for US equities on Alpaca "
        "that cannot fail silently.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    db = commands.add_parser("db", help="trading database schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate the trading DB (DATABASE_URL) to the latest schema")
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    upgrade.set_defaults(handler=_db_upgrade)
    current = db_commands.add_parser("current", help="show the DB's migration and whether it is up to date")
    current.set_defaults(handler=_db_current)

    demo = commands.add_parser(
        "demo",
        help="run a simulated trading session through Dagster against the local sim broker, then report outcomes",
    )
    demo.add_argument("--minutes", type=int, default=60, help="simulated minutes after the open (default 60)")
    demo.add_argument("--full-day", action="store_true", help="run the whole session (≈195 stop-loss runs)")
    demo.add_argument("--date", help="NYSE session to replay, YYYY-MM-DD (default: the last full session)")
    demo.add_argument("--seed", type=int, help="sim market seed (default TRADING_PIPELINE_SIM_SEED or 7)")
    demo.add_argument(
        "--no-protective-orders",
        action="store_true",
        help="plain market entries: only the pipeline's sweep protects positions (the first line of defence)",
    )
    demo.set_defaults(handler=_demo)

    sim = commands.add_parser("sim-broker", help="serve the local Alpaca-compatible paper broker on 127.0.0.1")
    sim.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    sim.add_argument("--seed", type=int, help="market seed (default TRADING_PIPELINE_SIM_SEED or 7)")
    sim.add_argument("--symbols", type=int, default=5000, help="universe size (default 5000)")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)")
    sim.set_defaults(handler=_sim_broker)

    watchdog = commands.add_parser(
        "watchdog", help="external dead-man's switch for cron/systemd: daemon heartbeats, automation, stop-loss runs"
    )
    watchdog.add_argument("--heartbeat-tolerance", type=int, default=90, help="seconds (default 90)")
    watchdog.add_argument(
        "--stale-after",
        type=int,
        default=360,
        help="seconds without a successful stop-loss run in a session before alerting (default 360)",
    )
    watchdog.set_defaults(handler=_watchdog)

    preflight = commands.add_parser("preflight", help="pre-market GO / NO-GO table; exit 0 only on GO")
    preflight.add_argument("--expect-halted", action="store_true", help="the kill switch is meant to be on")
    preflight.add_argument("--min-buying-power", type=float, default=1000.0, help="floor (default 1000)")
    preflight.set_defaults(handler=_preflight)

    status = commands.add_parser("status", help="how is trading going: health first, then outcomes, then P&L")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--date", help="trading day for outcomes and P&L, YYYY-MM-DD (default: today in New York)")
    status.set_defaults(handler=_status)

    from trading_pipeline.reporting.cli_commands import register as register_reporting

    register_reporting(commands)  # `report` and `backfill`

    from trading_pipeline import soak

    soak.register(commands)  # `soak`: the fault soak outside the test suite

    for name, halted, text in (
        ("halt", True, "kill switch ON: no new entries (stop-losses keep running)"),
        ("resume", False, "kill switch OFF: entries allowed again"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--reason", required=True, help="why (recorded with who and when)")
        command.add_argument("--actor", help="who (default: the OS user)")
        command.set_defaults(handler=lambda args, halted=halted: _set_halted(args, halted))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handler(args)
    except KNOWN_ERRORS as exc:
        print(f"trading-pipeline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("trading-pipeline: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
