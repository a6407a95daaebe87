"""The request discipline every Alpaca call goes through: one attempt budget, retries with backoff and
jitter on 429/5xx/timeouts/connection errors (Retry-After honoured), then `BrokerUnavailable`; and the
mapping of the SDK's failures to the product's errors (404 → NotFound, 401 → a message naming the keys,
403/422 on an order → OrderRejected in the broker's own words). Every call spends its priority of the
process's rate budget (`OPERATION_PRIORITY`, `rate_limit.py`); a refused token is `RateBudgetExhausted`, raised
as is: nothing was sent, so there is nothing to retry or resolve."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from trading_pipeline.broker.base import BrokerError, BrokerUnavailable, NotFound, OrderRejected
from trading_pipeline.broker.rate_limit import Priority, spending
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.broker.sdk import Failure, error_details

log = logging.getLogger("trading_pipeline.broker.alpaca")

T = TypeVar("T")

# What each broker method spends; anything not named is reconciliation. `submit_order` decides per order
# (an entry's id says "open"; closes and protective legs go first), see `alpaca_trading.order_priority`.
OPERATION_PRIORITY: dict[str, Priority] = {
    "close_position": Priority.CLOSE,
    "cancel_order": Priority.CLOSE,  # protective legs must go before a close can sell their qty
    "replace_stop": Priority.CLOSE,  # moving a stop is protective
    "latest_quotes": Priority.CLOSE,  # the stop decisions wait on them (the data API's own budget)
    "active_assets": Priority.ENTRY,
    "daily_bars": Priority.ENTRY,
}


def operation_priority(operation: str) -> Priority:
    return OPERATION_PRIORITY.get(operation, Priority.RECONCILE)


@dataclass
class Attempts:
    """How many HTTP requests a broker method made, retries included (the batching budget)."""

    count: int = 0


class AlpacaCalls:
    """The retry loop shared by the trading and market-data halves of `AlpacaBroker`."""

    retry: RetryPolicy
    _sleep: Callable[[float], None]
    _jitter: random.Random

    def _call(
        self, operation: str, fn: Callable[[], T], attempts: Attempts | None = None, *, order_call: bool = False
    ) -> T:
        """Run one SDK call with retries; map failures to the product's errors."""
        with spending(operation_priority(operation)):
            return self._call_with_retries(operation, fn, attempts, order_call=order_call)

    def _call_with_retries(
        self, operation: str, fn: Callable[[], T], attempts: Attempts | None, *, order_call: bool
    ) -> T:
        tries = attempts or Attempts()
        first = tries.count
        while True:
            tries.count += 1
            try:
                return fn()
            except BrokerError:
                raise  # our own refusal from the transport (RateBudgetExhausted): nothing was sent
            except Exception as exc:
                failure = error_details(exc)
                if failure is None:
                    raise unexpected(operation, exc) from exc
                made = tries.count - first
                if not failure.retryable:
                    raise error_for(operation, failure, order_call=order_call) from exc
                if made >= self.retry.max_attempts:
                    raise BrokerUnavailable(
                        f"{operation}: broker unavailable after {made} attempts ({describe(failure)})",
                        status=failure.status,
                    ) from exc
                self._backoff(operation, made, failure)

    def _backoff(self, operation: str, attempt: int, failure: Failure) -> None:
        delay = self.retry.delay(attempt, failure.retry_after, self._jitter)
        log.warning(
            "broker call %s failed (%s), attempt %d; retrying in %.2fs",
            operation,
            describe(failure),
            attempt,
            delay,
            extra={"operation": operation, "attempt": attempt, "status": failure.status, "delay_s": round(delay, 3)},
        )
        self._sleep(delay)


def describe(failure: Failure) -> str:
    status = f"HTTP {failure.status}" if failure.status is not None else "no HTTP status"
    return f"{status}: {failure.message}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def error_for(operation: str, failure: Failure, *, order_call: bool = False) -> BrokerError:
    status = failure.status
    if status == 404:
        return NotFound(f"{operation}: {failure.message}", status=404)
    if status == 401:
        return BrokerError(
            f"{operation}: not authorized ({failure.message}); check ALPACA_API_KEY / ALPACA_SECRET_KEY "
            "and that paper keys go with TRADING_MODE=paper",
            status=401,
        )
    if order_call and status in (403, 422):
        # The broker's own words, e.g. "qty must be > 0", with its code and the body's fields (what is available).
        return OrderRejected(failure.message, status=status, code=failure.code, details=failure.details)
    return BrokerError(f"{operation}: {describe(failure)}", status=status)


def unexpected(operation: str, exc: BaseException) -> BrokerError:
    """A response the SDK could not parse (shape changed, not JSON): a broker error, not a crash."""
    return BrokerError(f"{operation}: unexpected response ({type(exc).__name__}: {first_line(exc)})")
