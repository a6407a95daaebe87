"""The broker as a Dagster resource: AlpacaBroker on the real alpaca-py SDK, pointed at Alpaca or at the
local sim broker. Keys come from EnvVar only, so they never appear in run config or the UI."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from trading_pipeline.broker.base import Broker, ConfigurationError
from trading_pipeline.broker.factory import SIM_API_KEY, SIM_DEFAULT_URL, SIM_SECRET_KEY


class BrokerResource(dg.ConfigurableResource):
    """`kind`: `sim` (the local Alpaca-compatible paper broker) or `alpaca` (Alpaca's paper/live API)."""

    kind: str = "sim"
    # repr=False: a resolved resource holds the key values; its repr (in a traceback, a debug print) must not.
    api_key: str = Field(default=SIM_API_KEY, repr=False)
    secret_key: str = Field(default=SIM_SECRET_KEY, repr=False)
    trading_url: str | None = None
    data_url: str | None = None
    paper: bool = True
    request_timeout_seconds: float = 10.0

    _client: Broker | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._client = self._run_client()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        close = getattr(self._client, "close", None)
        if callable(close):
            close()
        self._client = None

    def build(self) -> Broker:
        from trading_pipeline.broker.alpaca import AlpacaBroker

        if self.kind not in ("sim", "alpaca"):
            raise ConfigurationError(f"broker kind must be `sim` or `alpaca`, got {self.kind!r}")
        if not self.api_key or not self.secret_key:
            raise ConfigurationError("ALPACA_API_KEY and ALPACA_SECRET_KEY must be set for the alpaca broker")
        trading_url = self.trading_url or (SIM_DEFAULT_URL if self.kind == "sim" else None)
        data_url = self.data_url or (trading_url if self.kind == "sim" else None)
        return AlpacaBroker(
            api_key=self.api_key,
            secret_key=self.secret_key,
            trading_url=trading_url,
            data_url=data_url,
            paper=self.paper,
            timeout=self.request_timeout_seconds,
        )

    def client(self) -> Broker:
        if self._client is None:
            self._client = self._run_client()
        return self._client

    def _run_client(self) -> Broker:
        """The run's client: its steps share one clock reading (broker/run_clock.py)."""
        from trading_pipeline.broker.run_clock import RunClock

        return RunClock(self.build())  # type: ignore[return-value]
