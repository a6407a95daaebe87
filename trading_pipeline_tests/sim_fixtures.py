"""Shared helpers for the simulator and broker-adapter tests (plain functions; each test module wraps them
in its own fixtures, so nothing here depends on a conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from trading_pipeline.broker.alpaca import AlpacaBroker
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.sim.market import Market
from trading_pipeline.sim.server import SimBroker

# Tuesday 24 November 2026, 10:00 in New York: a regular session, two days before Thanksgiving and
# three before the half day that follows it.
SESSION_START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
SEED = 7
N_SYMBOLS = 300
TEST_KEY_ID = "test-key-id-AKIA0123"
TEST_SECRET = "test-secret-do-not-log-9f8e7d"
# Fast but real backoff: tests sleep for real, only briefly.
FAST_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05, max_retry_after=2.0)


@contextmanager
def running_sim(**options: Any) -> Iterator[SimBroker]:
    settings: dict[str, Any] = {"seed": SEED, "n_symbols": N_SYMBOLS, "start": SESSION_START}
    settings.update(options)
    with SimBroker(**settings) as sim:
        yield sim


def make_broker(sim: SimBroker, **options: Any) -> AlpacaBroker:
    settings: dict[str, Any] = {
        "trading_url": sim.url,
        "data_url": sim.url,
        "timeout": 2.0,
        "retry": FAST_RETRY,
    }
    settings.update(options)
    return AlpacaBroker(TEST_KEY_ID, TEST_SECRET, **settings)


def tradable_symbols(market: Market, n: int, *, exclude: tuple[str, ...] = ("SPY",)) -> list[str]:
    """The first `n` active, tradable, shortable symbols (alphabetical), for tests that trade them."""
    chosen = [
        a.symbol
        for a in market.assets
        if a.status == "active" and a.tradable and a.shortable and a.fractionable and a.symbol not in exclude
    ]
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} tradable symbols, {n} wanted")
    return chosen[:n]


def trading_headers() -> dict[str, str]:
    return {"APCA-API-KEY-ID": TEST_KEY_ID, "APCA-API-SECRET-KEY": TEST_SECRET}
