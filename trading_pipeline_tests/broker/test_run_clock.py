"""A run's steps share one reading of the broker's clock; a failed read is asked again; the rest passes through."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trading_pipeline.broker.base import BrokerUnavailable, MarketClock
from trading_pipeline.broker.run_clock import RunClock

AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


class CountingClock:
    def __init__(self) -> None:
        self.asked = 0
        self.fail = False

    def clock(self) -> MarketClock:
        self.asked += 1
        if self.fail:
            raise BrokerUnavailable("clock: down")
        return MarketClock(timestamp=AT, is_open=True, next_open=AT, next_close=AT)

    def positions(self) -> list:
        return ["passed through"]


def test_one_reading_per_run_then_asked_again() -> None:
    inner, now = CountingClock(), [0.0]
    client = RunClock(inner, reuse_seconds=30, monotonic=lambda: now[0])  # type: ignore[arg-type]
    first = client.clock()
    now[0] = 29.0
    assert client.clock() is first and inner.asked == 1
    now[0] = 30.0
    client.clock()
    assert inner.asked == 2
    assert client.positions() == ["passed through"]


def test_a_failed_read_is_not_kept() -> None:
    inner, now = CountingClock(), [0.0]
    client = RunClock(inner, monotonic=lambda: now[0])  # type: ignore[arg-type]
    inner.fail = True
    with pytest.raises(BrokerUnavailable):
        client.clock()
    inner.fail = False
    assert client.clock().is_open and inner.asked == 2
