"""The one dagster.Definitions of the product: assets, checks, jobs, schedules, sensors and resources; it
wires the automation into the monitoring assets (`health`, `preflight`) that judge it.

Settings are read when the code location loads, so a forbidden configuration (live trading without the
opt-in, an unknown broker kind) stops the location from loading with the reason, instead of failing later.
Secrets reach resources only as EnvVar, which the UI shows by name, never by value.

The entry strategy is the exception: this location also runs the stop-loss schedule, the stop-trigger sensor
and the alert sensors, and a location that does not load runs none of them. So a strategy problem never
fails the load; it is logged here as one ERROR line (checked without running the strategy's code), and the
full check fails the pre-flight and every trading-day run at its start, with the same kind of line.
"""

from __future__ import annotations

import logging
import os

import dagster as dg

from trading_pipeline.assets.closes import closes
from trading_pipeline.assets.entries import entries
from trading_pipeline.assets.health import build_health_asset
from trading_pipeline.assets.performance import performance
from trading_pipeline.assets.positions import positions
from trading_pipeline.assets.preflight import build_preflight_asset
from trading_pipeline.assets.quotes import quotes
from trading_pipeline.assets.universe import universe
from trading_pipeline.automation.jobs import (
    flatten_job,
    health_job,
    performance_job,
    preflight_job,
    stop_loss_job,
    trading_day_job,
)
from trading_pipeline.automation.registry import AUTOMATION, SCHEDULES, SENSORS
from trading_pipeline.domain.strategy import StrategyProblem
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.resources.strategy import StrategyConfig
from trading_pipeline.resources.strategy_loading import check_without_importing
from trading_pipeline.settings import BrokerKind, Settings, TradingMode

log = logging.getLogger(__name__)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    database_url: str | dg.EnvVar = (
        dg.EnvVar("DATABASE_URL") if os.environ.get("DATABASE_URL") else settings.database_url
    )
    if settings.broker is BrokerKind.ALPACA:
        broker = BrokerResource(
            kind="alpaca",
            api_key=dg.EnvVar("ALPACA_API_KEY"),
            secret_key=dg.EnvVar("ALPACA_SECRET_KEY"),
            trading_url=settings.alpaca_trading_url,
            data_url=settings.alpaca_data_url,
            paper=settings.trading_mode is TradingMode.PAPER,
        )
    else:
        broker = BrokerResource(kind="sim", trading_url=settings.alpaca_trading_url, data_url=settings.alpaca_data_url)
    return sim_or_live_resources(
        database_url,
        broker,
        strategy=StrategyConfig(
            name=settings.strategy,
            params=settings.strategy_params,
            outside_positions=settings.outside_positions.value,
        ),
        alerts_webhook_url=_secret("TRADING_PIPELINE_ALERT_WEBHOOK_URL"),
        slack_token=_secret("TRADING_PIPELINE_SLACK_TOKEN"),
        slack_channel=os.environ.get("TRADING_PIPELINE_SLACK_CHANNEL") or None,
        apprise_urls=_secret("TRADING_PIPELINE_APPRISE_URLS"),
    )


def sim_or_live_resources(
    database_url: str | dg.EnvVar,
    broker: BrokerResource,
    *,
    strategy: StrategyConfig | None = None,
    alerts_webhook_url: str | dg.EnvVar | None = None,
    slack_token: str | dg.EnvVar | None = None,
    slack_channel: str | None = None,
    apprise_urls: str | dg.EnvVar | None = None,
) -> dict[str, dg.ConfigurableResource]:
    """Every resource the definitions need, sharing one database resource (the demo and tests use this too)."""
    database = TradingDatabase(url=database_url)
    return {
        "database": database,
        "broker": broker,
        "strategy": strategy or StrategyConfig(),
        "alerts": AlertsResource(
            webhook_url=alerts_webhook_url,
            slack_token=slack_token,
            slack_channel=slack_channel,
            apprise_urls=apprise_urls,
        ),
    }


def _secret(name: str) -> dg.EnvVar | None:
    """An EnvVar when the variable is set (the UI shows its name, never its value), else None."""
    return dg.EnvVar(name) if os.environ.get(name) else None


ASSETS = [
    universe,
    quotes,
    positions,
    entries,
    closes,
    build_preflight_asset(AUTOMATION),
    build_health_asset(AUTOMATION),
    performance,
]
JOBS = [stop_loss_job, trading_day_job, preflight_job, health_job, performance_job, flatten_job]


def build_definitions(resources: dict[str, dg.ConfigurableResource]) -> dg.Definitions:
    """The product's Definitions with the given resources (the demo and tests point them at a sim broker)."""
    return dg.Definitions(assets=ASSETS, jobs=JOBS, schedules=SCHEDULES, sensors=SENSORS, resources=resources)


def strategy_load_problem(settings: Settings) -> str | None:
    """The configured strategy's problem that can be told without running its code (None: none found)."""
    try:
        check_without_importing(settings.strategy, settings.strategy_params)
    except StrategyProblem as exc:
        return str(exc)
    return None


_settings = Settings.from_env()
if (_problem := strategy_load_problem(_settings)) is not None:
    # Logged, not raised: see the module docstring — entries will fail loudly, protection must keep loading.
    log.error("%s (entries will not run; stop-loss protection is unaffected)", _problem)
defs = build_definitions(build_resources(_settings))
