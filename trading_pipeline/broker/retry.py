"""Retry policy for broker calls: bounded attempts, exponential backoff with jitter, Retry-After honoured."""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts the first try. Delays grow base, 2·base, 4·base … up to `backoff_cap`, with
    "equal jitter" (half fixed, half random) so many clients do not retry in lockstep. A server's
    Retry-After is honoured up to `max_retry_after`: beyond that, waiting is worse than failing loudly."""

    max_attempts: int = 4
    backoff_base: float = 0.25
    backoff_cap: float = 8.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.backoff_base < 0 or self.backoff_cap < 0 or self.max_retry_after < 0:
            raise ValueError("backoff_base, backoff_cap and max_retry_after must be >= 0")

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        jittered = ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
        if retry_after is not None and retry_after > 0:
            return max(jittered, min(retry_after, self.max_retry_after))
        return jittered


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); None when absent or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
