"""`trading-pipeline watchdog`, `preflight`, `status`, `halt` and `resume`: is it working, may it trade, and
the kill switch. Each judges the schedules and sensors the product defines (`automation.registry`)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from trading_pipeline.cli.common import EXIT_FAILED, EXIT_OK, instance_and_database, optional_day
from trading_pipeline.settings import Settings, SettingsError
from trading_pipeline.store.database import Database


def _watchdog(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from trading_pipeline.automation.registry import AUTOMATION
    from trading_pipeline.monitoring.alert_channels import channel_items
    from trading_pipeline.monitoring.health import HealthItem
    from trading_pipeline.monitoring.watchdog import WatchdogReport, alert_on, check_health, render, trading_db_item
    from trading_pipeline.resources.alert_channels import ChannelConfig
    from trading_pipeline.resources.alert_delivery import AlertDispatcher

    settings = Settings.from_env()
    channels = ChannelConfig.from_env(os.environ)
    with instance_and_database(settings) as (instance, instance_problem, db, db_problem):
        dispatcher = AlertDispatcher.from_config(db, channels)
        if instance is None:
            report = WatchdogReport([HealthItem("dagster instance", False, instance_problem or "unavailable")])
        else:
            report = check_health(
                instance,
                now=datetime.now(UTC),
                automation=AUTOMATION,
                heartbeat_tolerance=timedelta(seconds=args.heartbeat_tolerance),
                stale_after=timedelta(seconds=args.stale_after),
                workspace_file=_workspace_file(args.workspace),
            )
        if db is None:
            report = WatchdogReport([*report.items, trading_db_item(db_problem)])
        # Judged before alerting: the channels' state is what the deliveries so far say.
        report = WatchdogReport([*report.items, *channel_items(settings, channels, db)])
        alert_on(report, dispatcher)
        print(render(report))
        return EXIT_OK if report.healthy else EXIT_FAILED


def _workspace_file(option: str | None):  # type: ignore[no-untyped-def]
    """--workspace, else ./workspace.yaml when there is one (the file `dagster dev` and the daemon load)."""
    from pathlib import Path

    if option:
        return Path(option)
    default = Path("workspace.yaml")
    return default if default.is_file() else None


def _preflight(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime
    from decimal import Decimal

    from trading_pipeline.automation.registry import AUTOMATION
    from trading_pipeline.broker.factory import broker_from_settings
    from trading_pipeline.monitoring.preflight import render, run_preflight

    settings = Settings.from_env()
    with instance_and_database(settings) as (instance, instance_problem, db, db_problem):
        report = run_preflight(
            now=datetime.now(UTC),
            settings=settings,
            instance=instance,
            instance_problem=instance_problem,
            db=db,
            db_problem=db_problem,
            broker_factory=lambda: broker_from_settings(settings),
            automation=AUTOMATION,
            expect_halted=args.expect_halted,
            min_buying_power=Decimal(str(args.min_buying_power)),
        )
        print(render(report))
        return EXIT_OK if report.go else EXIT_FAILED


def _status(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from trading_pipeline.automation.registry import AUTOMATION
    from trading_pipeline.checks.registry import ALL_SPECS
    from trading_pipeline.domain.calendar import NEW_YORK
    from trading_pipeline.monitoring.alert_channels import channel_items
    from trading_pipeline.monitoring.status import build_status, render_status
    from trading_pipeline.resources.alert_channels import ChannelConfig

    settings = Settings.from_env()
    now = datetime.now(UTC)
    day = optional_day(args.date) or now.astimezone(NEW_YORK).date()
    with instance_and_database(settings) as (instance, instance_problem, db, db_problem):
        report = build_status(
            now=now,
            day=day,
            instance=instance,
            instance_problem=instance_problem,
            db=db,
            db_problem=db_problem,
            automation=AUTOMATION,
            check_specs=ALL_SPECS,
            alert_channels=channel_items(settings, ChannelConfig.from_env(os.environ), db),
        )
        print(json.dumps(report.as_json(), indent=2) if args.json else render_status(report))
        return EXIT_OK if report.healthy else EXIT_FAILED


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


def register(commands: Any) -> None:
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
    watchdog.add_argument(
        "--workspace",
        help="workspace file the webserver and daemon load, checked the way `dagster definitions validate` "
        "does (default ./workspace.yaml when present)",
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

    for name, halted, text in (
        ("halt", True, "kill switch ON: no new entries (stop-losses keep running)"),
        ("resume", False, "kill switch OFF: entries allowed again"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--reason", required=True, help="why (recorded with who and when)")
        command.add_argument("--actor", help="who (default: the OS user)")
        command.set_defaults(handler=lambda args, halted=halted: _set_halted(args, halted))
