"""Typed settings read from the environment, validated once, with errors that name the fix.

Every environment variable the product reads is listed in ENVIRONMENT below; the README's configuration
table is checked against it by a test, so the two cannot drift apart.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

E = TypeVar("E", bound=enum.StrEnum)


class SettingsError(ValueError):
    """An environment variable has a value the product must not run with."""


class BrokerKind(enum.StrEnum):
    SIM = "sim"
    ALPACA = "alpaca"


class TradingMode(enum.StrEnum):
    PAPER = "paper"
    LIVE = "live"


class OutsidePositions(enum.StrEnum):
    """What happens to a position at the broker that the pipeline did not open."""

    ADOPT = "adopt"  # a trade with the strategy's default stop/take-profit, then protected like any other
    ALERT_ONLY = "alert-only"  # one alert a day naming it as unprotected; never sold


class AlertsPolicy(enum.StrEnum):
    """Whether alerts must reach a person: unset (`channels`) → pre-flight is NO-GO without a channel;
    `log-only` → the log and the `alerts` table are explicitly accepted (the demo, tests)."""

    CHANNELS = "channels"
    LOG_ONLY = "log-only"


LIVE_OPT_IN_VALUE = "yes-real-money"

# name → (default shown in the README, what it does)
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "TRADING_PIPELINE_DATA_DIR": ("./data", "Folder for the embedded SQLite trading DB, demo Dagster home and charts."),
    "DATABASE_URL": (
        "sqlite:///<data dir>/trading.db",
        "Trading database (SQLAlchemy URL). Production: postgresql+psycopg://user@host/db.",
    ),
    "TRADING_PIPELINE_BROKER": ("sim", "`sim` = the local Alpaca-compatible paper broker; `alpaca` = Alpaca's API."),
    "TRADING_PIPELINE_SIM_SEED": ("7", "Seed of the local sim broker's market (same seed → same market)."),
    "TRADING_PIPELINE_STRATEGY": (
        "momentum",
        "Entry strategy: a built-in or entry-point name (group `trading_pipeline.strategies`), or "
        "`package.module:attribute`.",
    ),
    "TRADING_PIPELINE_STRATEGY_PARAMS": (
        "(unset: the strategy's defaults)",
        "The strategy's parameters as a JSON object, validated by its own Params model. No secrets: shown in the UI.",
    ),
    "ALPACA_API_KEY": ("(none)", "Alpaca key id; required when the broker is `alpaca`. Secret."),
    "ALPACA_SECRET_KEY": ("(none)", "Alpaca secret key; required when the broker is `alpaca`. Secret."),
    "ALPACA_TRADING_URL": (
        "Alpaca's paper/live host by TRADING_MODE",
        "Host root of the trading API (no /v2), e.g. the sim broker's http://127.0.0.1:PORT.",
    ),
    "ALPACA_DATA_URL": ("https://data.alpaca.markets", "Host root of the market-data API (no /v2)."),
    "TRADING_MODE": ("paper", "`paper` or `live`. Live also needs TRADING_LIVE_CONFIRM."),
    "TRADING_PIPELINE_OUTSIDE_POSITIONS": (
        "`adopt` on paper, `alert-only` on live",
        "Positions at the broker the pipeline did not open: `adopt` (protected with the strategy's default "
        "stop/take-profit, audited and alerted) or `alert-only` (an alert a day naming each as unprotected).",
    ),
    "TRADING_LIVE_CONFIRM": (
        "(unset)",
        f"Must equal `{LIVE_OPT_IN_VALUE}` for TRADING_MODE=live; otherwise the product refuses to start.",
    ),
    "DAGSTER_HOME": (
        "(unset; the demo uses <data dir>/dagster_home)",
        "Dagster instance folder; set it to keep run history (dagster dev deletes a temporary one on exit).",
    ),
    "TRADING_PIPELINE_ALERT_WEBHOOK_URL": (
        "(unset)",
        "Generic JSON webhook for alerts (POST, 5 s timeout, 3 tries). Secret: never logged or shown.",
    ),
    "TRADING_PIPELINE_SLACK_TOKEN": ("(unset)", "Slack bot token for alerts (needs the `slack` extra). Secret."),
    "TRADING_PIPELINE_SLACK_CHANNEL": ("(unset)", "Slack channel for alerts, e.g. #trading-alerts."),
    "TRADING_PIPELINE_APPRISE_URLS": (
        "(unset)",
        "Apprise URLs for alerts, comma- or space-separated, one channel each (tgram://, discord://, mailto://, "
        "ntfy://, pagerduty://, pover://, msteams://, json://, …). Secret: never logged or shown.",
    ),
    "TRADING_PIPELINE_ALERTS": (
        "(unset: a channel is required)",
        "`log-only` accepts alerts reaching only the log and the alerts table; otherwise pre-flight is NO-GO "
        "without a webhook, Slack or Apprise channel.",
    ),
    "DAGSTER_PG_HOST": (
        "(unset)",
        "Production only: PostgreSQL host of the Dagster instance (deploy/dagster.postgres.yaml).",
    ),
    "DAGSTER_PG_USER": ("(unset)", "Production only: its user."),
    "DAGSTER_PG_PASSWORD": ("(unset)", "Production only: its password. Secret."),
    "DAGSTER_PG_DB": ("(unset)", "Production only: its database name."),
    "TEST_DATABASE_URL": ("(unset)", "Tests only: a PostgreSQL URL; Postgres-parametrized tests run against it."),
    "TP_MODEL_EXAMPLES": (
        "12",
        "Tests only: examples of the model-based stop-loss test (hypothesis); 300 for the long profile.",
    ),
    "TP_MODEL_STEPS": (
        "25",
        "Tests only: steps per example of the model-based stop-loss test; 60 for the long profile.",
    ),
    "TP_MODEL_SEED": (
        "derandomized",
        "Tests only: `random` runs the model-based tests with fresh seeds, an integer with that seed.",
    ),
    "TP_MODEL_RECORD": (
        "(unset)",
        "Tests only: a folder where the model-based tests save failing examples (to copy into the stored ones).",
    ),
    "TRADING_PIPELINE_REQUIRE_POSTGRES": (
        "(unset)",
        "Tests only: `1` makes a missing TEST_DATABASE_URL/Postgres a failure instead of a skip (CI sets it).",
    ),
}


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    broker: BrokerKind
    sim_seed: int
    trading_mode: TradingMode
    alpaca_trading_url: str | None
    alpaca_data_url: str | None
    # Kept as text: a strategy problem must never stop settings (and so the code location) from loading.
    strategy: str = "momentum"
    strategy_params: str = ""
    outside_positions: OutsidePositions = OutsidePositions.ADOPT
    alerts_policy: AlertsPolicy = AlertsPolicy.CHANNELS
    # A bad TRADING_PIPELINE_ALERTS must not stop the location (and so stop-loss protection) from loading:
    # it falls back to the strict policy and pre-flight says what was wrong.
    alerts_policy_problem: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("TRADING_PIPELINE_DATA_DIR", "./data")).expanduser()
        database_url = env.get("DATABASE_URL") or default_database_url(data_dir)
        broker = _enum(env, "TRADING_PIPELINE_BROKER", BrokerKind, BrokerKind.SIM)
        mode = _enum(env, "TRADING_MODE", TradingMode, TradingMode.PAPER)
        if mode is TradingMode.LIVE and env.get("TRADING_LIVE_CONFIRM") != LIVE_OPT_IN_VALUE:
            raise SettingsError(
                "TRADING_MODE=live trades real money and needs an explicit opt-in: set "
                f"TRADING_LIVE_CONFIRM={LIVE_OPT_IN_VALUE}, or use TRADING_MODE=paper"
            )
        outside = _enum(
            env,
            "TRADING_PIPELINE_OUTSIDE_POSITIONS",
            OutsidePositions,
            OutsidePositions.ADOPT if mode is TradingMode.PAPER else OutsidePositions.ALERT_ONLY,
        )
        try:
            alerts_policy, alerts_problem = (
                _enum(env, "TRADING_PIPELINE_ALERTS", AlertsPolicy, AlertsPolicy.CHANNELS),
                "",
            )
        except SettingsError as exc:
            alerts_policy, alerts_problem = AlertsPolicy.CHANNELS, f"{exc} (unset it to require a channel)"
        seed_text = env.get("TRADING_PIPELINE_SIM_SEED", "7")
        try:
            sim_seed = int(seed_text)
        except ValueError:
            raise SettingsError(f"TRADING_PIPELINE_SIM_SEED must be an integer, got {seed_text!r}") from None
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            broker=broker,
            sim_seed=sim_seed,
            trading_mode=mode,
            alpaca_trading_url=env.get("ALPACA_TRADING_URL") or None,
            alpaca_data_url=env.get("ALPACA_DATA_URL") or None,
            strategy=env.get("TRADING_PIPELINE_STRATEGY", "").strip() or "momentum",
            strategy_params=env.get("TRADING_PIPELINE_STRATEGY_PARAMS", ""),
            outside_positions=outside,
            alerts_policy=alerts_policy,
            alerts_policy_problem=alerts_problem,
        )


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'trading.db').resolve()}"


def _enum(env: Mapping[str, str], name: str, kind: type[E], default: E) -> E:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return kind(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise SettingsError(f"{name} must be one of {allowed}; got {raw!r}") from None
