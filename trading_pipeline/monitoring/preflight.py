"""Pre-market go/no-go: one line per item, with the reason for every NO. Exit 0 / GO only when all pass.

The same code runs as `trading-pipeline preflight` and as the scheduled `preflight` asset at 09:00 ET,
which records the result and alerts on NO-GO.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import dagster as dg

from trading_pipeline.broker.base import Broker, BrokerError, ConfigurationError
from trading_pipeline.broker.factory import required_environment
from trading_pipeline.domain.calendar import NEW_YORK, session_bounds, session_status
from trading_pipeline.domain.strategy import StrategyProblem
from trading_pipeline.monitoring.alert_channels import channel_items
from trading_pipeline.monitoring.health import (
    DEFAULT_HEARTBEAT_TOLERANCE,
    Automation,
    HealthItem,
    automation_states,
    daemon_health,
)
from trading_pipeline.monitoring.market_clock import read_market_clock
from trading_pipeline.resources.alert_channels import ChannelConfig
from trading_pipeline.resources.strategy_loading import load_strategy
from trading_pipeline.settings import Settings
from trading_pipeline.store import alerts_repository as alerts_repo
from trading_pipeline.store.database import Database, DatabaseError
from trading_pipeline.store.migrate import ensure_schema_current

DEFAULT_MIN_BUYING_POWER = Decimal("1000")


@dataclass(frozen=True, slots=True)
class PreflightReport:
    items: list[HealthItem]

    @property
    def go(self) -> bool:
        return all(item.ok for item in self.items)

    @property
    def failures(self) -> list[HealthItem]:
        return [item for item in self.items if not item.ok]


def run_preflight(
    *,
    now: datetime,
    settings: Settings,
    instance: dg.DagsterInstance | None,
    db: Database | None,
    broker_factory: Callable[[], Broker],
    automation: Automation,
    expect_halted: bool = False,
    min_buying_power: Decimal = DEFAULT_MIN_BUYING_POWER,
    heartbeat_tolerance: timedelta = DEFAULT_HEARTBEAT_TOLERANCE,
    environ: Mapping[str, str] | None = None,
    instance_problem: str | None = None,
    db_problem: str | None = None,
    alert_channels: ChannelConfig | None = None,
) -> PreflightReport:
    """`alert_channels`: what the `alerts` resource delivers to (the asset passes its own); by default the
    channels the environment configures, as the watchdog and `alert-test` read them."""
    env = os.environ if environ is None else environ
    items: list[HealthItem] = []
    if instance is None:
        items.append(
            HealthItem(
                "dagster instance",
                False,
                f"{instance_problem or 'DAGSTER_HOME is not set'} — without it the daemon, schedules and "
                "sensors cannot be checked",
            )
        )
    else:
        items += automation_states(instance, automation)
        items += daemon_health(instance, now=now, tolerance=heartbeat_tolerance)
    missing = [name for name in required_environment(settings) if not env.get(name, "").strip()]
    items.append(
        HealthItem(
            "environment", not missing, f"missing {', '.join(missing)}" if missing else "every required variable is set"
        )
    )
    items.append(_database_item(db, db_problem))
    channels = ChannelConfig.from_env(env) if alert_channels is None else alert_channels
    items += channel_items(settings, channels, db)
    items.append(strategy_item(settings))
    items += _broker_items(broker_factory, min_buying_power)
    items.append(_kill_switch_item(db, expect_halted))
    items.append(_session_item(now))
    items.append(_clock_item(broker_factory, now))
    return PreflightReport(items)


def strategy_item(settings: Settings) -> HealthItem:
    """The configured entry strategy imported, checked and made with its params — as a trading-day run will."""
    try:
        loaded = load_strategy(settings.strategy, settings.strategy_params)
    except StrategyProblem as exc:
        return HealthItem("strategy", False, str(exc))
    selection = loaded.selection
    return HealthItem("strategy", True, f"{loaded.strategy.name} ({selection.source}: {selection.target}) loads")


def _database_item(db: Database | None, problem: str | None) -> HealthItem:
    if db is None:
        return HealthItem("trading DB", False, problem or "not configured or unreachable", "trading_db")
    try:
        ensure_schema_current(db)
    except DatabaseError as exc:
        return HealthItem("trading DB", False, str(exc), "trading_db")
    return HealthItem("trading DB", True, "reachable, schema at the latest migration")


def _broker_items(broker_factory: Callable[[], Broker], min_buying_power: Decimal) -> list[HealthItem]:
    try:
        broker = broker_factory()
        account = broker.account()
    except (BrokerError, ConfigurationError) as exc:
        return [HealthItem("broker", False, f"unreachable or keys rejected: {exc}")]
    items = [HealthItem("broker", True, "reachable, keys accepted")]
    tradable = account.can_trade
    items.append(
        HealthItem(
            "account",
            tradable,
            f"status {account.status}, trading_blocked "
            f"{account.trading_blocked}, account_blocked {account.account_blocked}",
        )
    )
    enough = account.buying_power >= min_buying_power
    items.append(HealthItem("buying power", enough, f"{account.buying_power:,.2f} (floor {min_buying_power:,.2f})"))
    return items


def _kill_switch_item(db: Database | None, expect_halted: bool) -> HealthItem:
    if db is None:
        return HealthItem("kill switch", False, "unknown: trading DB unavailable")
    try:
        state = alerts_repo.current_trading_state(db)
    except Exception as exc:  # an unreadable kill switch is a NO, never a silent GO
        return HealthItem("kill switch", False, f"unreadable: {type(exc).__name__}")
    word = "HALTED" if state.halted else "trading"
    detail = f"{word} (by {state.actor}: {state.reason})"
    if state.halted != expect_halted:
        detail += " — unexpected" + (": resume with `trading-pipeline resume`" if state.halted else "")
    return HealthItem("kill switch", state.halted == expect_halted, detail)


def _session_item(now: datetime) -> HealthItem:
    status = session_status(now)
    if not status.trading_day:
        return HealthItem("session today", False, status.reason)
    opened, closed = session_bounds(now.astimezone(NEW_YORK).date()) or (None, None)
    assert opened is not None and closed is not None
    early = " (early close)" if status.early_close else ""
    return HealthItem(
        "session today", True, f"{opened.astimezone(NEW_YORK):%H:%M}–{closed.astimezone(NEW_YORK):%H:%M} ET{early}"
    )


def _clock_item(broker_factory: Callable[[], Broker], now: datetime) -> HealthItem:
    """The broker's clock against the calendar (one clock: a disagreement is a NO-GO, not a coin toss)."""
    try:
        broker = broker_factory()
    except (BrokerError, ConfigurationError) as exc:
        return HealthItem("market clock", False, f"cannot ask the broker: {exc}", "market_clock")
    return read_market_clock(broker, now).health_item()


def render(report: PreflightReport) -> str:
    verdict = "GO" if report.go else f"NO-GO ({len(report.failures)} item(s) failed)"
    width = max(len(i.name) for i in report.items)
    lines = [f"pre-flight: {verdict}"]
    lines += [f"  {'GO   ' if i.ok else 'NO-GO'}  {i.name:<{width}}  {i.detail}" for i in report.items]
    return "\n".join(lines)
