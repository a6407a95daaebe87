"""`trading-pipeline flatten --reason "…" [--symbol S ...] [--actor NAME]`: close everything now.

The same step as `flatten_job` (`steps/flatten.py`); this prints its table. Exit 0 when everything is flat or
its closing order was accepted (filled, working, or queued for the next open); 1 when anything was refused;
2 for bad input or a broker/DB that cannot be used, with one line that says what to do.
"""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

from trading_pipeline.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from trading_pipeline.settings import Settings


def _flatten(args: argparse.Namespace) -> int:
    import sys

    from trading_pipeline.broker.factory import broker_from_settings
    from trading_pipeline.resources.alert_delivery import AlertDispatcher
    from trading_pipeline.steps.flatten import FlattenError, flatten_book
    from trading_pipeline.store.database import Database
    from trading_pipeline.store.migrate import ensure_schema_current

    settings = Settings.from_env()
    with Database(settings.database_url) as db:
        ensure_schema_current(db)
        dispatcher = AlertDispatcher(
            db,
            webhook_url=os.environ.get("TRADING_PIPELINE_ALERT_WEBHOOK_URL"),
            slack_token=os.environ.get("TRADING_PIPELINE_SLACK_TOKEN"),
            slack_channel=os.environ.get("TRADING_PIPELINE_SLACK_CHANNEL"),
        )
        broker = broker_from_settings(settings)
        try:
            result = flatten_book(
                db,
                broker,
                reason=args.reason,
                actor=args.actor or getpass.getuser(),
                symbols=args.symbol,
                alerts=dispatcher,
            )
        except FlattenError as exc:
            print(f"trading-pipeline flatten: {exc}", file=sys.stderr)
            return EXIT_USAGE
        finally:
            close = getattr(broker, "close", None)
            if callable(close):
                close()
    print(render(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def render(result: Any) -> str:
    halted = result.halted
    lines = [
        f"HALTED: no new entries (by {halted.actor} at {halted.changed_at:%Y-%m-%d %H:%M:%S} UTC: {halted.reason})",
    ]
    if result.clock is not None and not result.clock.clock.is_open:
        lines.append(
            f"The market is CLOSED ({result.clock.source}): closing orders are queued for the next open "
            f"at {result.next_open()}, not filled now."
        )
    rows = [("SYMBOL", "HELD", "WHOSE", "OUTCOME", "DETAIL")]
    rows += [(x.symbol, x.held, x.whose, x.outcome.upper(), x.detail) for x in result.lines]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines.append("")
    lines += ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)), row[4]]) for row in rows]
    if len(rows) == 1:
        lines.append("(nothing held and no open order: the book is already flat)")
    if result.cancelled:
        lines.append("")
        lines.append(f"Open orders cancelled ({len(result.cancelled)}):")
        lines += [f"  - {c}" for c in result.cancelled]
    lines.append("")
    refused = result.refused
    if refused:
        lines.append(
            f"NOT FLAT: {len(refused)} refused — see DETAIL; fix the cause and run the same command again "
            "(orders already sent are found by their ids, never sent twice)."
        )
    else:
        lines.append(f"OK: {result.orders_sent} closing order(s) sent; every position is flat or its close accepted.")
    return "\n".join(lines)


def register(commands: Any) -> None:
    command = commands.add_parser(
        "flatten",
        help="close everything now: halt entries, cancel open orders, close every position (or --symbol ones)",
    )
    command.add_argument("--reason", required=True, help="why (recorded with who and when, and in the alert)")
    command.add_argument("--symbol", action="append", metavar="S", help="only this symbol (repeatable)")
    command.add_argument("--actor", help="who (default: the OS user)")
    command.set_defaults(handler=_flatten)
