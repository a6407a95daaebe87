"""One clock per run: the broker's clock read once and reused by the run's steps for a short while.

A stop-loss run's steps (quotes, positions, closes) each need "is the market open, what time is it"; asking
the broker three times costs two requests of Alpaca's 200-a-minute budget per run and can give three answers.
`RunClock` wraps a run's broker client: the first `clock()` is asked, later ones within `CLOCK_REUSE` get the
same reading. A failed read is not kept (the next step asks again, and falls back to the calendar on its own).
Everything else passes straight through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from trading_pipeline.broker.base import Broker, MarketClock

# Well under a stop-loss run's cadence (2 minutes): a run's steps share one reading, two runs never do.
CLOCK_REUSE = 30.0


class RunClock:
    def __init__(
        self, inner: Broker, *, reuse_seconds: float = CLOCK_REUSE, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner = inner
        self._reuse = reuse_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._reading: tuple[float, MarketClock] | None = None

    @property
    def inner(self) -> Broker:
        return self._inner

    def clock(self) -> MarketClock:
        with self._lock:
            if self._reading is not None and self._monotonic() - self._reading[0] < self._reuse:
                return self._reading[1]
        reading = self._inner.clock()  # outside the lock: a slow broker never blocks other calls
        with self._lock:
            self._reading = (self._monotonic(), reading)
        return reading

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
