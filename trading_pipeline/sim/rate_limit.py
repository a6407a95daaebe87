"""Alpaca's request limit, as the simulator enforces it: a quota per API key per window, reported on every response.

What Alpaca documents (alpacahq/alpaca-docs): content/api-references/trading-api/_index.md — "There is a rate
limit for the API requests. When it is exceeded, the API server returns error response with HTTP status code
429. The rate limit is 200 requests every minute per API key."; content/api-references/broker-api/_index.md —
"The rate limits are described in the HTTP response with the following fields": `x-ratelimit-limit` ("The API
call limit"), `x-ratelimit-remaining` ("The remaining quota until reset"), `x-ratelimit-reset` ("The UNIX epoch
in seconds when the quota is reset"). A quota "until reset" at an epoch is a fixed window, so that is what is
modelled: a key's window opens with its first request and lasts `window_seconds`; each request spends one; over
the quota the answer is 429 `{"code": 42910000, "message": "rate limit exceeded"}` (the market-data API's
body has no code) with the same headers. The trading and market-data APIs have separate quotas.

Off by default (`RateLimitConfig()` enforces nothing and sends no headers): the sim also serves the test suite
and the benches, which send thousands of requests a minute to test other things (faults, batching, a whole
day's runs), and the simulated clock often stands still or jumps hours, so neither clock could hold a real
minute's quota without making those tests wait or fail. Switch it on with `SimBroker(rate_limit=...)`,
`POST /_sim/rate_limit {"trading": 200, "data": 200}` or `trading-pipeline sim-broker --rate-limit 200`; a test
may shorten the window (it is wall time, so the client's own clock agrees with the reset it is told).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

ALPACA_LIMIT_PER_MINUTE = 200
TRADING = "trading"
DATA = "data"


@dataclass(frozen=True)
class RateLimitConfig:
    """Requests per window for each API; None: not enforced (and no headers)."""

    trading: int | None = None
    data: int | None = None
    window_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name in (TRADING, DATA):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a whole number of requests >= 1, or null, got {value!r}")
        if not self.window_seconds > 0:
            raise ValueError(f"window_seconds must be above 0, got {self.window_seconds}")

    @classmethod
    def alpaca(cls) -> RateLimitConfig:
        """Alpaca's documented default: 200 requests per minute per key, each API its own quota."""
        return cls(trading=ALPACA_LIMIT_PER_MINUTE, data=ALPACA_LIMIT_PER_MINUTE)

    def limit_for(self, api: str) -> int | None:
        return self.trading if api == TRADING else self.data

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request may go through, and the headers its answer carries (empty when not enforced)."""

    allowed: bool
    headers: dict[str, str]


@dataclass
class _Window:
    opened: float
    used: int


class SimRateLimit:
    """Fixed-window quotas per (API, key). Thread-safe; `clock` is wall time in epoch seconds (injectable)."""

    def __init__(self, config: RateLimitConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or RateLimitConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._allowed: Counter[str] = Counter()
        self._limited: Counter[str] = Counter()

    def configure(self, config: RateLimitConfig | None = None, /, **changes: Any) -> RateLimitConfig:
        """Replace the config (or change some fields); open windows start over."""
        with self._lock:
            unknown = set(changes) - RateLimitConfig.field_names()
            if unknown:
                raise ValueError(f"unknown rate limit settings: {', '.join(sorted(unknown))}")
            self.config = replace(config if config is not None else self.config, **changes)
            self._windows.clear()
            return self.config

    def check(self, api: str, key_id: str | None, route: str) -> Verdict:
        """Spend one request of `key_id`'s quota on `api`; a request without a key is not limited (it gets 401)."""
        with self._lock:
            limit = self.config.limit_for(api)
            if limit is None or not key_id:
                return Verdict(True, {})
            now = self._clock()
            # The key itself is never kept, even in the sim: only a digest names its window.
            slot = (api, hashlib.sha256(key_id.encode()).hexdigest()[:16])
            window = self._windows.get(slot)
            if window is None or now >= window.opened + self.config.window_seconds:
                window = self._windows[slot] = _Window(opened=now, used=0)
            allowed = window.used < limit
            if allowed:
                window.used += 1
                self._allowed[route] += 1
            else:
                self._limited[route] += 1
            reset = window.opened + self.config.window_seconds
            headers = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(max(limit - window.used, 0)),
                # Whole seconds as Alpaca sends them, rounded up: a client that waits until then is never early.
                "X-RateLimit-Reset": str(math.ceil(reset)),
            }
            return Verdict(allowed, headers)

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                "allowed": dict(self._allowed),
                "limited": dict(self._limited),
                "limited_total": sum(self._limited.values()),
            }

    def reset_counters(self) -> None:
        with self._lock:
            self._allowed.clear()
            self._limited.clear()
