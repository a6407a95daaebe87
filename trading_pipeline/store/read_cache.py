"""Reads of one `Database` kept for reuse while they are still what a new read would return.

A stop-loss run reads its 10,000 open trades more than once: the sweep, then the daily-loss P&L and the
outcome checks after it (and in the positions step protection, then reconciliation, then its metadata). Each
full read costs ~0.5 s of pages. A kept read is reused only

- when the caller asks for it (`reuse=True`; the reads that act — the sweep, protection — always read anew),
- while no statement through this engine has written its table since the read began (`DatabaseMonitor.writes`:
  statements and the commits that end them, from every thread of the process), and
- for at most `max_age` seconds: other processes write without this engine seeing it, so a reused read is as
  stale as a read taken up to `max_age` ago, never more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

REUSE_SECONDS = 5.0


class WriteGenerations(Protocol):
    """What the cache asks of `DatabaseMonitor` (store/database.py, which owns the cache: no import back)."""

    def writes(self, table: str) -> int: ...


@dataclass(frozen=True, slots=True)
class _Kept:
    generation: int
    taken_at: float
    value: Any


class ReadCache:
    def __init__(
        self,
        monitor: WriteGenerations,
        *,
        max_age: float = REUSE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monitor = monitor
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: dict[Hashable, _Kept] = {}
        self.hits = 0
        self.reads = 0

    def read(self, key: Hashable, table: str, load: Callable[[], Any], *, reuse: bool) -> Any:
        """`load()`'s result, or the kept one when `reuse` and it is still valid (see the module)."""
        if reuse:
            with self._lock:
                kept = self._kept.get(key)
                fresh = (
                    kept is not None
                    and kept.generation == self._monitor.writes(table)
                    and self._clock() - kept.taken_at <= self._max_age
                )
                if fresh:
                    self.hits += 1
                    return kept.value  # type: ignore[union-attr]
        generation, taken_at = self._monitor.writes(table), self._clock()  # before the read: a write during it
        value = load()  # leaves the kept read already out of date
        with self._lock:
            self.reads += 1
            self._kept[key] = _Kept(generation, taken_at, value)
        return value
