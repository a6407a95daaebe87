"""Fault injection and request counters for the simulator's HTTP server.

Faults are what a real broker does to a client on a bad day: 429 with Retry-After, 500, 503 (with a body
that is not JSON, as a proxy would send), added latency, a request that hangs until the client gives up,
and "the order was accepted but the response never arrived" (`drop`: processed, then the connection is
reset; `drop_502`: processed, then an empty 502; `504`: processed, then a gateway's 504 — the case where
alpaca-py's own retry would POST the order a second time). They are drawn from a seeded RNG so a sequence of
faults is reproducible, or scripted exactly with `fail_next`.

Counters record every request by method + route template (e.g. `GET /v2/stocks/quotes/latest`) and every
fault injected; tests read them to prove batching and retry behaviour.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

FAULT_KINDS = ("429", "500", "503", "504", "timeout", "drop", "drop_502")
# What `GET /v2/positions` answers (a listing fault, for "mass disappearance" tests): the book, `[]` (200) while
# positions exist, or another account's positions.
POSITIONS_LISTINGS = ("normal", "empty", "foreign")
ADMIN_PREFIX = "/_sim/"


@dataclass(frozen=True)
class FaultConfig:
    """Per-request fault probabilities (0..1) and their parameters.

    `routes`: route templates the random faults apply to (e.g. {"POST /v2/orders"}); None means every
    Alpaca route. `exempt_admin`: the `/_sim/` routes never fail (so a test can always reconfigure).
    `positions_listing`: "normal", "empty" (`GET /v2/positions` answers `[]` while positions exist) or
    "foreign" (it answers another account's positions); `clear()` puts it back to "normal".
    """

    seed: int = 0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_timeout: float = 0.0
    rate_drop: float = 0.0
    rate_drop_502: float = 0.0
    rate_504: float = 0.0
    latency_ms: int = 0
    retry_after_seconds: int = 1
    timeout_seconds: float = 30.0
    routes: frozenset[str] | None = None
    exempt_admin: bool = True
    positions_listing: str = "normal"

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_500", "rate_503", "rate_504", "rate_timeout", "rate_drop", "rate_drop_502"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if sum(self.rates().values()) > 1.0:
            raise ValueError("fault rates must add up to at most 1")
        if self.latency_ms < 0 or self.timeout_seconds < 0 or self.retry_after_seconds < 0:
            raise ValueError("latency_ms, timeout_seconds and retry_after_seconds must be >= 0")
        if self.positions_listing not in POSITIONS_LISTINGS:
            raise ValueError(f"positions_listing must be one of {', '.join(POSITIONS_LISTINGS)}")
        if self.routes is not None and not isinstance(self.routes, frozenset):
            object.__setattr__(self, "routes", frozenset(self.routes))

    def rates(self) -> dict[str, float]:
        return {
            "429": self.rate_429,
            "500": self.rate_500,
            "503": self.rate_503,
            "504": self.rate_504,
            "timeout": self.rate_timeout,
            "drop": self.rate_drop,
            "drop_502": self.rate_drop_502,
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["routes"] = None if self.routes is None else sorted(self.routes)
        return data

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


@dataclass
class _Scripted:
    kind: str
    route: str | None
    remaining: int


@dataclass
class FaultInjector:
    """Decides, per request, whether to inject a fault; counts requests and faults. Thread-safe."""

    config: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._script: list[_Scripted] = []
        self._requests: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        # Set when the server shuts down, so requests sleeping in a fault wake up at once.
        self.stopping = threading.Event()

    # ---- configuration ----

    def configure(self, config: FaultConfig | None = None, /, **changes: Any) -> FaultConfig:
        """Replace the config (or change some fields); reseeds the RNG so the sequence restarts."""
        with self._lock:
            base = config if config is not None else self.config
            unknown = set(changes) - FaultConfig.field_names()
            if unknown:
                raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
            self.config = replace(base, **changes)
            self._rng = random.Random(self.config.seed)
            return self.config

    def clear(self) -> None:
        """No faults at all (counters are kept)."""
        with self._lock:
            self.config = FaultConfig(seed=self.config.seed)
            self._script.clear()

    def fail_next(self, kind: str, count: int = 1, route: str | None = None) -> None:
        """The next `count` requests (to `route`, if given) get fault `kind`, before any random fault."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        with self._lock:
            self._script.append(_Scripted(kind, route, count))

    def scripted_pending(self) -> bool:
        """Whether faults scripted with `fail_next` are still waiting for their requests."""
        with self._lock:
            return bool(self._script)

    # ---- per request ----

    def decide(self, route: str) -> str | None:
        """Count the request; return the fault kind to inject, or None."""
        with self._lock:
            self._requests[route] += 1
            is_admin = route.split(" ", 1)[-1].startswith(ADMIN_PREFIX)
            if is_admin and self.config.exempt_admin:
                return None
            kind = self._scripted(route) or self._random(route, is_admin)
            if kind is not None:
                self._faults[f"{kind} {route}"] += 1
            return kind

    def count(self, route: str) -> None:
        """Count a request answered before any fault could apply (over the rate limit); returns no fault."""
        with self._lock:
            self._requests[route] += 1

    def _scripted(self, route: str) -> str | None:
        for entry in self._script:
            if entry.route is None or entry.route == route:
                entry.remaining -= 1
                if entry.remaining == 0:
                    self._script.remove(entry)
                return entry.kind
        return None

    def _random(self, route: str, is_admin: bool) -> str | None:
        routes = self.config.routes
        if (routes is not None and route not in routes) or (routes is None and is_admin):
            return None
        rates = self.config.rates()
        if not any(rates.values()):
            return None
        draw = self._rng.random()
        for kind, rate in rates.items():
            if draw < rate:
                return kind
            draw -= rate
        return None

    # ---- counters ----

    def counters(self) -> dict[str, dict[str, int]]:
        with self._lock:
            faults_by_kind: Counter[str] = Counter()
            for key, n in self._faults.items():
                faults_by_kind[key.split(" ", 1)[0]] += n
            return {
                "requests": dict(self._requests),
                "faults": dict(self._faults),
                "faults_by_kind": dict(faults_by_kind),
            }

    def requests(self, route: str) -> int:
        with self._lock:
            return self._requests[route]

    def reset_counters(self) -> None:
        with self._lock:
            self._requests.clear()
            self._faults.clear()
