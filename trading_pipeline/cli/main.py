"""`trading-pipeline` command line: the parser, built from one module per command group, and dispatch.

Every command turns the product's own errors (bad settings, unreachable DB, old schema, broker
misconfiguration) into one line on stderr that names the fix, and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from trading_pipeline import __version__
from trading_pipeline.broker.base import ConfigurationError
from trading_pipeline.cli import alerts, db, demo, flatten, monitoring, reporting
from trading_pipeline.cli.common import EXIT_USAGE
from trading_pipeline.settings import SettingsError
from trading_pipeline.store.database import DatabaseError

KNOWN_ERRORS: tuple[type[Exception], ...] = (SettingsError, DatabaseError, ConfigurationError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trading-pipeline",
        description="A Dagster-orchestrated paper-trading pipeline for US equities on Alpaca "
        "that cannot fail silently.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    db.register(commands)  # `db upgrade`, `db current`
    demo.register(commands)  # `demo`, `sim-broker`, `soak`
    monitoring.register(commands)  # `watchdog`, `preflight`, `status`, `halt`, `resume`
    alerts.register(commands)  # `alert-test`
    reporting.register(commands)  # `report`, `backfill`
    flatten.register(commands)  # `flatten`
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
