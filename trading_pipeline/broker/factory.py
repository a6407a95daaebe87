"""Build the broker the settings ask for: the local sim broker or Alpaca, both through AlpacaBroker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trading_pipeline.broker.alpaca import AlpacaBroker
from trading_pipeline.settings import BrokerKind, Settings

SIM_DEFAULT_URL = "http://127.0.0.1:8765"  # where `trading-pipeline sim-broker` listens by default
SIM_API_KEY = "sim-key"
SIM_SECRET_KEY = "sim-secret"


def broker_from_settings(settings: Settings, environ: Mapping[str, str] | None = None, **options: Any) -> AlpacaBroker:
    if settings.broker is BrokerKind.SIM:
        url = settings.alpaca_trading_url or SIM_DEFAULT_URL
        return AlpacaBroker(
            SIM_API_KEY, SIM_SECRET_KEY, trading_url=url, data_url=settings.alpaca_data_url or url, **options
        )
    return AlpacaBroker.from_settings(settings, environ, **options)


def required_environment(settings: Settings) -> list[str]:
    """Variables the jobs cannot run without (Dagster itself only complains at run start)."""
    return ["ALPACA_API_KEY", "ALPACA_SECRET_KEY"] if settings.broker is BrokerKind.ALPACA else []
