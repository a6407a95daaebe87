"""`trading-pipeline` command line.

Every command turns the product's own errors (bad settings, unreachable DB, old schema, broker
misconfiguration) into one line on stderr that names the fix, and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

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
    demo.set_defaults(handler=_demo)

    sim = commands.add_parser("sim-broker", help="serve the local Alpaca-compatible paper broker on 127.0.0.1")
    sim.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    sim.add_argument("--seed", type=int, help="market seed (default TRADING_PIPELINE_SIM_SEED or 7)")
    sim.add_argument("--symbols", type=int, default=5000, help="universe size (default 5000)")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)")
    sim.set_defaults(handler=_sim_broker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
