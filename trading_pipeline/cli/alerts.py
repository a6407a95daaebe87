"""`trading-pipeline alert-test`: does an alert reach a person? One clearly-marked test incident through every
configured channel, and per channel: delivered, or the error and the fix. Exit 0 only if every one delivered.

The outcome is kept in the `alerts` table (a resolved `alert-test` row) when the trading DB is reachable, so
`preflight`, `status` and `watchdog` judge each channel by this delivery once it is the latest one — a channel
fixed after a failure is GO again once a test reaches it.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from trading_pipeline.cli.common import EXIT_FAILED, EXIT_OK, open_database
from trading_pipeline.settings import Settings

TEST_TITLE = "TEST — trading-pipeline alert-test, not a real incident"


def _alert_test(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from trading_pipeline.monitoring.alert_channels import HOW_TO_ADD_A_CHANNEL, delivery_fix
    from trading_pipeline.resources.alert_channels import ChannelConfig
    from trading_pipeline.resources.alert_delivery import AlertDispatcher
    from trading_pipeline.store.alerts_repository import record_test_delivery

    settings = Settings.from_env()
    channels = ChannelConfig.from_env(os.environ)
    for problem in channels.half_configured():
        print(f"alert-test: {problem}")
    if not channels.names():
        print("alert-test: FAILED — no channel is configured, so no alert reaches a person.")
        print(f"  What to do: {HOW_TO_ADD_A_CHANNEL}")
        return EXIT_FAILED
    now = datetime.now(UTC)
    message = (
        f"A test sent by `trading-pipeline alert-test` at {now:%Y-%m-%d %H:%M:%S} UTC to check that alerts reach "
        "you. Nothing is wrong; no action is needed."
    )
    quiet = logging.getLogger("trading_pipeline.alerts.test")
    quiet.setLevel(logging.CRITICAL)
    dispatcher = AlertDispatcher.from_config(None, channels, logger=quiet)
    with _apprise_log_silenced():
        deliveries = dispatcher.send_test(TEST_TITLE, message)
    width = max(len(name) for name in deliveries)
    failed = [name for name, status in deliveries.items() if status != "ok"]
    print(f"alert-test: {len(deliveries) - len(failed)} of {len(deliveries)} channel(s) delivered")
    for name, status in deliveries.items():
        verdict = (
            "delivered"
            if status == "ok"
            else f"FAILED {status.removeprefix('failed: ')} — fix: {delivery_fix(name, status)}"
        )
        print(f"  {name:<{width}}  {verdict}")
    db, problem = open_database(settings)
    if db is None:
        print(f"  (not recorded in the alerts table: {problem})")
    else:
        try:
            record_test_delivery(db, title=TEST_TITLE, message=message, deliveries=deliveries, now=now)
        finally:
            db.dispose()
    return EXIT_FAILED if failed else EXIT_OK


@contextmanager
def _apprise_log_silenced() -> Iterator[None]:
    """Each failure is printed with its fix; Apprise's own log lines on stderr would say it twice. Not by
    raising its level: Apprise gathers the words for "why" from its own log records."""
    log = logging.getLogger("apprise")
    null, propagate = logging.NullHandler(), log.propagate
    log.addHandler(null)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(null)
        log.propagate = propagate


def register(commands: Any) -> None:
    command = commands.add_parser(
        "alert-test",
        help="send one test incident through every configured alert channel; exit 0 only if each delivered",
    )
    command.set_defaults(handler=_alert_test)
