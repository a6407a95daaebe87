"""AlpacaBroker: the `Broker` protocol on alpaca-py's own TradingClient and StockHistoricalDataClient.

The same code talks to Alpaca (paper or live) and to the local simulator (`trading_pipeline.sim`): only
the host roots differ, passed to the SDK as `url_override`. What this adapter adds to the SDK:

- every request has a timeout, and the SDK's own retry is off (see `sdk.py` for why);
- retries with exponential backoff + jitter, bounded by `RetryPolicy.max_attempts` (`alpaca_calls.py`);
- idempotent order submits by client_order_id (`alpaca_trading.py`);
- chunked, validated latest quotes (`alpaca_market_data.py`);
- one rate budget per key and API in the process, closes first (`rate_limit.py`): every instance for the same
  key and host shares it, so two brokers in one process cannot together overrun Alpaca's 200/min;
- SDK models become the product's types (`alpaca_models.py`). Keys never appear in reprs, logs or errors.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.trading.client import TradingClient

from trading_pipeline.broker.alpaca_market_data import DEFAULT_FEED, QUOTE_CHUNK_SIZE, MarketDataCalls
from trading_pipeline.broker.alpaca_trading import DEFAULT_FILL_WAIT_SECONDS, TradingCalls
from trading_pipeline.broker.base import ConfigurationError
from trading_pipeline.broker.rate_limit import RateLimiter, shared_limiter
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.broker.sdk import harden_client
from trading_pipeline.settings import Settings, TradingMode

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "QUOTE_CHUNK_SIZE", "AlpacaBroker"]

DEFAULT_TIMEOUT_SECONDS = 10.0


class AlpacaBroker(TradingCalls, MarketDataCalls):
    """The product's broker on alpaca-py. Thread-safe as far as requests.Session is (one per client)."""

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        trading_url: str | None = None,
        data_url: str | None = None,
        paper: bool = True,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        quote_chunk_size: int = QUOTE_CHUNK_SIZE,
        feed: str = DEFAULT_FEED,
        fill_wait_seconds: float = DEFAULT_FILL_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        jitter: random.Random | None = None,
        trading_limiter: RateLimiter | None = None,
        data_limiter: RateLimiter | None = None,
    ) -> None:
        """`trading_limiter` / `data_limiter`: the rate budgets to spend; by default the process's shared ones
        for this key at these hosts (a test passes its own, on a fake clock)."""
        if not api_key or not secret_key:
            raise ConfigurationError(
                "Alpaca keys are missing: set ALPACA_API_KEY and ALPACA_SECRET_KEY "
                "(for the local sim broker any non-empty values work)"
            )
        if timeout <= 0:
            raise ValueError(f"timeout must be above 0 seconds, got {timeout}")
        if quote_chunk_size < 1:
            raise ValueError(f"quote_chunk_size must be at least 1, got {quote_chunk_size}")
        self.trading_url = _strip_root(trading_url)
        self.data_url = _strip_root(data_url)
        self.paper = paper
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.quote_chunk_size = quote_chunk_size
        self.feed = feed
        self.fill_wait_seconds = fill_wait_seconds
        self._sleep = sleep
        self._jitter = jitter or random.Random()
        self._trading = TradingClient(api_key, secret_key, paper=paper, url_override=self.trading_url)
        self._data = StockHistoricalDataClient(api_key, secret_key, url_override=self.data_url)
        self._corporate = CorporateActionsClient(api_key, secret_key, url_override=self.data_url)
        trading_host = self.trading_url or ("paper-api.alpaca.markets" if paper else "api.alpaca.markets")
        self.trading_limiter = trading_limiter or shared_limiter("trading", trading_host, api_key)
        # Corporate actions are served by the data API and count against its budget.
        self.data_limiter = data_limiter or shared_limiter("data", self.data_url or "data.alpaca.markets", api_key)
        harden_client(self._trading, timeout, self.trading_limiter)
        harden_client(self._data, timeout, self.data_limiter)
        harden_client(self._corporate, timeout, self.data_limiter)

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] | None = None, **options: Any
    ) -> AlpacaBroker:
        """Keys from ALPACA_API_KEY / ALPACA_SECRET_KEY; URLs and paper/live from `settings`."""
        env = os.environ if environ is None else environ
        missing = [name for name in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY") if not env.get(name, "").strip()]
        if missing:
            raise ConfigurationError(
                f"TRADING_PIPELINE_BROKER=alpaca needs {' and '.join(missing)}: set "
                f"{'them' if len(missing) > 1 else 'it'} to your Alpaca key id / secret (paper keys for "
                "TRADING_MODE=paper), or to any non-empty value when ALPACA_TRADING_URL points at the "
                "local sim broker"
            )
        return cls(
            env["ALPACA_API_KEY"].strip(),
            env["ALPACA_SECRET_KEY"].strip(),
            trading_url=settings.alpaca_trading_url,
            data_url=settings.alpaca_data_url,
            paper=settings.trading_mode is TradingMode.PAPER,
            **options,
        )

    def close(self) -> None:
        """Release pooled HTTP connections (the Dagster resource calls this at teardown)."""
        for client in (self._trading, self._data, self._corporate):
            client._session.close()

    def __repr__(self) -> str:
        trading = self.trading_url or ("paper-api.alpaca.markets" if self.paper else "api.alpaca.markets")
        return (
            f"AlpacaBroker(trading={trading!r}, data={self.data_url or 'data.alpaca.markets'!r}, "
            f"paper={self.paper}, timeout={self.timeout})"
        )


def _strip_root(url: str | None) -> str | None:
    """alpaca-py appends "/v2/…" itself; accept a root given with a trailing slash or /v2 anyway."""
    if not url:
        return None
    root = url.strip().rstrip("/")
    return root[: -len("/v2")] if root.endswith("/v2") else root
