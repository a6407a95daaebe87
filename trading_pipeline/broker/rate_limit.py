"""One rate budget per Alpaca key and API, shared by every client in the process, spent on protection first.

Alpaca's trading API allows 200 requests per minute per key and answers a request over it with a 429; every
response carries the budget (alpacahq/alpaca-docs, content/api-references/trading-api/_index.md: "The rate
limit is 200 requests every minute per API key"; content/api-references/broker-api/_index.md:
"x-ratelimit-limit | The API call limit", "x-ratelimit-remaining | The remaining quota until reset",
"x-ratelimit-reset | The UNIX epoch in seconds when the quota is reset"). The market-data API has its own
budget, counted the same way, so it gets its own limiter.

`RateLimiter` is a token bucket (`limit` tokens, refilled evenly over `window_seconds`) kept in step with the
server: each response's X-RateLimit-* headers set the bucket to the server's remaining quota and, until the
server's reset, never let more requests through than it has left; at the reset the quota is full again. Without
headers (a server that sends none) the bucket alone paces at the default 200/min.

Priorities (`Priority`): closes and protective orders first, then reconciliation, then entries. A caller waits
while a more urgent one is queued; reconciliation may not spend the last `reserve` tokens kept for closes, and
entries keep a larger reserve free; each priority waits at most `max_wait_seconds` and is then refused with
`RateBudgetExhausted` (an entry at once when its wait would exceed the bound), so a short budget skips
entries visibly instead of stalling a stop-loss run.

Which priority a request spends is carried by a context variable (`spending`), set by the adapter around each
broker method and read where the request is sent (`sdk.py`'s transport adapter), so every HTTP request alpaca-py
makes — retries, pagination and fill look-ups included — takes a token. Keys are never stored: the registry is
keyed by a digest of (API, host, key id).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from trading_pipeline.broker.base import RateBudgetExhausted

DEFAULT_LIMIT = 200
DEFAULT_WINDOW_SECONDS = 60.0
# Alpaca's reset is whole epoch seconds and the two clocks are never quite equal: trust a reset this much late.
RESET_MARGIN_SECONDS = 0.25
# Refill arithmetic in floats of epoch seconds (a quarter-microsecond apart): a token a ten-thousandth short is
# there, and a wait is never shorter than a millisecond (an epoch's float could not add a nanosecond).
_EPSILON = 1e-4
_MIN_WAIT_SECONDS = 0.001


class Priority(enum.IntEnum):
    """Lower is more urgent."""

    CLOSE = 0  # close orders, protective orders, the cancels a close needs, the quotes a stop decision needs
    RECONCILE = 1  # positions, order listings and look-ups, clock, calendar, account
    ENTRY = 2  # entry orders, the universe's asset listing, daily bars


@dataclass(frozen=True, slots=True)
class Budget:
    """What one priority may spend: it leaves `reserve` (a fraction of the limit) to more urgent requests and
    waits at most `max_wait_seconds` for a token."""

    reserve: float
    max_wait_seconds: float


def default_budgets() -> dict[Priority, Budget]:
    return {
        # A full window and a bit: closes are refused only when the server has not refilled in a whole minute.
        Priority.CLOSE: Budget(reserve=0.0, max_wait_seconds=DEFAULT_WINDOW_SECONDS + 5),
        Priority.RECONCILE: Budget(reserve=0.10, max_wait_seconds=30.0),
        # Entries never stall a run: a second or two of pacing, then "skipped: no rate budget".
        Priority.ENTRY: Budget(reserve=0.25, max_wait_seconds=2.0),
    }


@dataclass(frozen=True)
class RatePolicy:
    limit: int = DEFAULT_LIMIT
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    budgets: Mapping[Priority, Budget] = field(default_factory=default_budgets)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_seconds <= 0:
            raise ValueError(f"limit must be >= 1 and window_seconds > 0, got {self.limit}/{self.window_seconds}")
        missing = set(Priority) - set(self.budgets)
        if missing:
            raise ValueError(f"budgets missing for {sorted(p.name for p in missing)}")


class Clock(Protocol):
    """Wall time (the server's reset is a unix epoch) and a wait that returns early when notified."""

    def time(self) -> float: ...

    def wait(self, condition: threading.Condition, timeout: float) -> None: ...


class WallClock:
    def time(self) -> float:
        return time.time()

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        condition.wait(timeout)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The limiter's state, for logs, metadata and tests."""

    limit: int
    tokens: float
    server_remaining: int | None
    server_reset: float | None
    queued: dict[str, int]
    taken: dict[str, int]
    refused: dict[str, int]


class RateLimiter:
    """A thread-safe token bucket with priorities, kept in step with X-RateLimit-* headers (module docstring)."""

    def __init__(self, policy: RatePolicy | None = None, clock: Clock | None = None) -> None:
        self.policy = policy or RatePolicy()
        self._clock = clock or WallClock()
        self._cond = threading.Condition()
        self._limit = self.policy.limit
        self._tokens = float(self._limit)
        self._stamp = self._clock.time()
        self._server_remaining: int | None = None
        self._server_reset: float | None = None
        self._queued: Counter[Priority] = Counter()
        # Requests sent and not answered yet. A response's X-RateLimit-Remaining may not count them yet, so
        # the bucket follows it less these (concurrent closes would otherwise spend the same quota twice).
        self._in_flight = 0
        self._taken: Counter[Priority] = Counter()
        self._refused: Counter[Priority] = Counter()

    # ---- spending ----

    def acquire(self, priority: Priority) -> None:
        """Take one token for a request of `priority`, waiting within its bound; else `RateBudgetExhausted`."""
        budget = self.policy.budgets[priority]
        with self._cond:
            start = self._clock.time()
            deadline = start + budget.max_wait_seconds
            self._queued[priority] += 1
            try:
                while True:
                    now = self._clock.time()
                    self._refill(now)
                    outranked = any(self._queued[p] for p in Priority if p < priority)
                    wait = self._wait_for_token(now, self._reserve(budget))
                    if not outranked and wait <= 0:
                        self._take()
                        self._taken[priority] += 1
                        self._in_flight += 1
                        return
                    if now + max(wait, 0.0) > deadline and (not outranked or now >= deadline):
                        # The token would come too late (or never came): refuse now, loudly, rather than stall.
                        self._refused[priority] += 1
                        raise RateBudgetExhausted(
                            f"no {priority.name.lower()} rate budget within {budget.max_wait_seconds:g}s "
                            f"({self._describe(now)})"
                        )
                    step = wait if wait > 0 and not outranked else deadline - now
                    self._clock.wait(self._cond, max(min(step, deadline - now), _MIN_WAIT_SECONDS))
            finally:
                self._queued[priority] -= 1
                self._cond.notify_all()  # a more urgent caller leaving the queue lets the others go

    # ---- keeping in step with the server ----

    def finish(self, headers: Mapping[str, str]) -> None:
        """A request taken with `acquire` was answered (`headers`: its response's; empty when it failed)."""
        with self._cond:
            self._in_flight = max(self._in_flight - 1, 0)
            self._cond.notify_all()
        self.observe_headers(headers)

    def observe(self, limit: int | None, remaining: int | None, reset: float | None) -> None:
        """Adopt the server's view from one response's X-RateLimit-Limit / -Remaining / -Reset, less the
        requests still in flight."""
        with self._cond:
            now = self._clock.time()
            self._refill(now)
            if limit is not None and limit >= 1:
                self._limit = limit
            if remaining is not None and reset is not None:
                # A reset further away than a window is a clock we cannot trust: bound the wait.
                reset = min(reset, now + self.policy.window_seconds)
                if reset + RESET_MARGIN_SECONDS > now:
                    told = max(remaining - self._in_flight, 0)
                    same_window = self._server_reset is not None and self._server_reset == reset + RESET_MARGIN_SECONDS
                    if same_window and self._server_remaining is not None:
                        # Answers to concurrent requests arrive out of order: an older one's larger count is stale.
                        told = min(told, self._server_remaining)
                    self._server_remaining = told
                    self._server_reset = reset + RESET_MARGIN_SECONDS
                    self._tokens = float(min(self._server_remaining, self._limit))
            self._tokens = min(self._tokens, float(self._limit))
            self._cond.notify_all()

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """`observe` from response headers (any case); a response without them changes nothing."""
        limit = _int_header(headers, "X-RateLimit-Limit")
        remaining = _int_header(headers, "X-RateLimit-Remaining")
        reset = _int_header(headers, "X-RateLimit-Reset")
        if limit is None and remaining is None:
            return
        self.observe(limit, remaining, None if reset is None else float(reset))

    def wake(self) -> None:
        """Let waiters look at the clock again (a test's clock moved)."""
        with self._cond:
            self._cond.notify_all()

    def snapshot(self) -> Snapshot:
        with self._cond:
            self._refill(self._clock.time())
            return Snapshot(
                limit=self._limit,
                tokens=self._tokens,
                server_remaining=self._server_remaining,
                server_reset=self._server_reset,
                queued={p.name: n for p, n in self._queued.items() if n},
                taken={p.name: n for p, n in self._taken.items()},
                refused={p.name: n for p, n in self._refused.items()},
            )

    # ---- inside the lock ----

    def _reserve(self, budget: Budget) -> int:
        return math.ceil(budget.reserve * self._limit)

    def _refill(self, now: float) -> None:
        elapsed = max(now - self._stamp, 0.0)
        self._stamp = max(now, self._stamp)
        if self._server_reset is not None and now >= self._server_reset:
            # The server's window has turned over: its quota is full again.
            self._server_remaining = None
            self._server_reset = None
            self._tokens = float(max(self._limit - self._in_flight, 0))  # those may land in the new window
            return
        rate = self._limit / self.policy.window_seconds
        self._tokens = min(float(self._limit), self._tokens + elapsed * rate)

    def _available(self) -> float:
        if self._server_remaining is None:
            return self._tokens
        return min(self._tokens, float(self._server_remaining))

    def _wait_for_token(self, now: float, reserve: int) -> float:
        """Seconds until a token is free beyond `reserve` (0 or less: now)."""
        needed = reserve + 1
        if self._available() + _EPSILON >= needed:
            return 0.0
        if self._server_remaining is not None and self._server_remaining < needed:
            assert self._server_reset is not None
            return self._server_reset - now  # the bucket is full again at the server's reset
        if needed > self._limit:
            return math.inf
        rate = self._limit / self.policy.window_seconds
        return (needed - self._tokens) / rate

    def _take(self) -> None:
        self._tokens = max(self._tokens - 1, 0.0)
        if self._server_remaining is not None:
            self._server_remaining -= 1

    def _describe(self, now: float) -> str:
        text = f"{self._available():.1f} of {self._limit}/{self.policy.window_seconds:g}s left"
        if self._server_reset is not None:
            text += f", server quota resets in {max(self._server_reset - now, 0):.1f}s"
        return text


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(str(raw).strip()))
    except ValueError:
        return None


# ---- which priority the current request spends ----------------------------------------------------------

_SPENDING: ContextVar[Priority | None] = ContextVar("alpaca_rate_priority", default=None)


@contextlib.contextmanager
def spending(priority: Priority) -> Iterator[Priority]:
    """Requests sent inside spend `priority` — or the enclosing, more urgent one (the look-up that resolves
    an ambiguous close order is as urgent as the close)."""
    outer = _SPENDING.get()
    effective = priority if outer is None else min(outer, priority)
    token = _SPENDING.set(effective)
    try:
        yield effective
    finally:
        _SPENDING.reset(token)


def current_priority() -> Priority:
    """What a request sent now spends; outside any broker method, reconciliation's."""
    priority = _SPENDING.get()
    return Priority.RECONCILE if priority is None else priority


# ---- one limiter per key and API in the process ---------------------------------------------------------

_REGISTRY: dict[str, RateLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_limiter(api: str, host: str, api_key: str, policy: RatePolicy | None = None) -> RateLimiter:
    """The process's limiter for `api` ("trading" or "data") at `host` with this key id. Only a digest of the
    key is kept; a limit is per key at one server (paper and live, or two sims, are separate budgets)."""
    digest = hashlib.sha256(f"{api}\0{host}\0{api_key}".encode()).hexdigest()[:24]
    with _REGISTRY_LOCK:
        limiter = _REGISTRY.get(digest)
        if limiter is None:
            limiter = _REGISTRY[digest] = RateLimiter(policy)
        return limiter
