"""A Broker wrapper that runs every call inside a guard (the DB monitor's `broker_call`).

This is how the product proves "no DB connection is checked out while a broker call is in flight":
every broker call is bracketed, and the monitor counts any connection held by the calling thread.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from trading_pipeline.broker.base import Broker


class GuardedBroker:
    def __init__(self, inner: Broker, guard: Callable[[], AbstractContextManager[Any]]) -> None:
        self._inner = inner
        self._guard = guard
        self.calls = 0

    @property
    def inner(self) -> Broker:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            with self._guard():
                return attribute(*args, **kwargs)

        guarded.__name__ = name
        return guarded
