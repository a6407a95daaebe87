"""`trading-pipeline db upgrade|current`: the trading DB's schema (Alembic migrations)."""

from __future__ import annotations

import argparse
from typing import Any

from trading_pipeline.cli.common import EXIT_FAILED, EXIT_OK
from trading_pipeline.settings import Settings
from trading_pipeline.store.database import Database, redact


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


def register(commands: Any) -> None:
    db = commands.add_parser("db", help="trading database schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate the trading DB (DATABASE_URL) to the latest schema")
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    upgrade.set_defaults(handler=_db_upgrade)
    current = db_commands.add_parser("current", help="show the DB's migration and whether it is up to date")
    current.set_defaults(handler=_db_current)
