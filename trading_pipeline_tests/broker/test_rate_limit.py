"""The process's rate budget on a fake clock: refill, reserves and refusals by priority, the queue, and keeping in
step with X-RateLimit-* headers. No test sleeps: the fake clock moves when the limiter waits."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from requests.structures import CaseInsensitiveDict

from trading_pipeline.broker.alpaca_trading import order_priority
from trading_pipeline.broker.base import OrderRequest, RateBudgetExhausted
from trading_pipeline.broker.rate_limit import (
    RESET_MARGIN_SECONDS,
    Budget,
    Priority,
    RateLimiter,
    RatePolicy,
    current_priority,
    shared_limiter,
    spending,
)
from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.types import OrderAction, OrderSide

T0 = 1_800_000_000.0


class FakeClock:
    """Time stands still until the limiter waits; a wait moves time forward by exactly what was asked."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        self.waits.append(timeout)
        self.now += timeout


class ManualClock:
    """Time moves only when the test says; waiting threads are woken by `RateLimiter.wake`."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        condition.wait(1.0)  # woken by notify; the real timeout is only a safety net, time does not move


def limiter(limit: int = 60, clock: FakeClock | ManualClock | None = None, **policy: object) -> RateLimiter:
    return RateLimiter(RatePolicy(limit=limit, **policy), clock or FakeClock())  # type: ignore[arg-type]


def spend(bucket: RateLimiter, n: int, priority: Priority = Priority.CLOSE) -> None:
    for _ in range(n):
        bucket.acquire(priority)


# ---- the bucket -------------------------------------------------------------------------------------------


def test_a_full_bucket_serves_its_limit_at_once_then_refills_evenly() -> None:
    clock = FakeClock()
    bucket = limiter(60, clock)  # 60 per minute: one a second
    spend(bucket, 60)
    assert clock.waits == []
    bucket.acquire(Priority.CLOSE)
    assert clock.waits == [pytest.approx(1.0)]
    clock.now += 10  # ten seconds idle: ten tokens back
    spend(bucket, 10)
    assert len(clock.waits) == 1
    assert bucket.snapshot().taken == {"CLOSE": 71}


def test_reconciliation_and_entries_leave_their_reserves_to_closes() -> None:
    clock = FakeClock()
    bucket = limiter(100, clock)  # reserves: reconciliation keeps 10, entries 25
    spend(bucket, 75, Priority.ENTRY)
    assert clock.waits == []
    bucket.acquire(Priority.ENTRY)  # one token short of its reserve: a short wait, within its bound
    assert clock.waits == [pytest.approx(0.6)]
    spend(bucket, 15, Priority.RECONCILE)  # 25 left: reconciliation may spend 15, down to its reserve of 10
    assert bucket.snapshot().tokens == pytest.approx(10.0)
    spend(bucket, 10, Priority.CLOSE)  # closes may spend the last token
    assert len(clock.waits) == 1


def test_entries_are_refused_at_once_when_the_budget_will_not_come_back_in_time() -> None:
    clock = FakeClock()
    bucket = limiter(100, clock)
    bucket.observe(limit=100, remaining=10, reset=T0 + 30)  # the server: 10 left for the next 30 s
    with pytest.raises(RateBudgetExhausted, match="no entry rate budget within 2s"):
        bucket.acquire(Priority.ENTRY)
    assert clock.waits == []  # refused without stalling the caller
    spend(bucket, 10, Priority.CLOSE)  # the closes still get all ten
    assert clock.waits == []
    assert bucket.snapshot().refused == {"ENTRY": 1}


def test_a_close_waits_for_the_servers_reset_and_then_has_the_whole_quota() -> None:
    clock = FakeClock()
    bucket = limiter(200, clock)
    headers = {"x-ratelimit-limit": "30", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(T0 + 12))}
    bucket.observe_headers(CaseInsensitiveDict(headers))
    assert bucket.snapshot().limit == 30
    bucket.acquire(Priority.CLOSE)
    assert clock.waits == [pytest.approx(12 + RESET_MARGIN_SECONDS)]
    spend(bucket, 29)  # the new window's quota, at once
    assert len(clock.waits) == 1


def test_the_bucket_never_spends_more_than_the_server_says_is_left() -> None:
    clock = FakeClock()
    bucket = limiter(200, clock)
    bucket.observe(limit=200, remaining=3, reset=T0 + 40)  # another process spent the rest of this window
    spend(bucket, 3)
    assert clock.waits == []
    clock.now += 20  # half the window: a local bucket would have refilled ~66 tokens; the server has none
    bucket.acquire(Priority.CLOSE)
    assert clock.waits == [pytest.approx(20 + RESET_MARGIN_SECONDS)]


def test_responses_without_headers_change_nothing_and_a_far_reset_is_bounded() -> None:
    clock = FakeClock()
    bucket = limiter(60, clock)
    bucket.observe_headers(CaseInsensitiveDict({"Content-Type": "application/json"}))
    assert bucket.snapshot().server_remaining is None
    bucket.observe(limit=60, remaining=0, reset=T0 + 86_400)  # a clock a day off: wait one window at most
    bucket.acquire(Priority.CLOSE)
    assert clock.waits == [pytest.approx(60 + RESET_MARGIN_SECONDS)]


def test_closes_are_refused_only_after_a_whole_window() -> None:
    clock = FakeClock()
    bucket = limiter(10, clock, budgets={p: Budget(reserve=0.0, max_wait_seconds=5.0) for p in Priority})
    bucket.observe(limit=10, remaining=0, reset=T0 + 30)
    with pytest.raises(RateBudgetExhausted, match="no close rate budget within 5s"):
        bucket.acquire(Priority.CLOSE)


# ---- the queue --------------------------------------------------------------------------------------------


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.001)


def test_a_queued_close_is_served_before_an_entry_that_queued_first() -> None:
    clock = ManualClock()
    patient = {p: Budget(reserve=0.0, max_wait_seconds=1_000.0) for p in Priority}
    bucket = limiter(60, clock, budgets=patient)
    spend(bucket, 60)
    served: list[str] = []

    def take(priority: Priority) -> None:
        bucket.acquire(priority)
        served.append(priority.name)

    entry = threading.Thread(target=take, args=(Priority.ENTRY,))
    entry.start()
    wait_until(lambda: bucket.snapshot().queued.get("ENTRY") == 1, "the entry to queue")
    close = threading.Thread(target=take, args=(Priority.CLOSE,))
    close.start()
    wait_until(lambda: bucket.snapshot().queued.get("CLOSE") == 1, "the close to queue")

    clock.now += 1.0  # exactly one token
    bucket.wake()
    close.join(10)
    assert served == ["CLOSE"]
    assert bucket.snapshot().queued == {"ENTRY": 1}

    clock.now += 1.0
    bucket.wake()
    entry.join(10)
    assert served == ["CLOSE", "ENTRY"]


# ---- priorities at the call sites and the registry --------------------------------------------------------


def test_nested_calls_spend_the_more_urgent_priority() -> None:
    assert current_priority() is Priority.RECONCILE
    with spending(Priority.ENTRY):
        assert current_priority() is Priority.ENTRY
        with spending(Priority.CLOSE):
            assert current_priority() is Priority.CLOSE
        assert current_priority() is Priority.ENTRY
    with spending(Priority.CLOSE), spending(Priority.RECONCILE):
        assert current_priority() is Priority.CLOSE  # the look-up resolving a close is as urgent as the close


def test_entry_orders_spend_the_entry_budget_and_every_other_order_goes_first() -> None:
    trade = uuid.uuid4()

    def order(action: OrderAction | None) -> OrderRequest:
        cid = client_order_id(trade, action) if action else "someone-elses-id"
        return OrderRequest(symbol="ABC", side=OrderSide.BUY, qty=1, client_order_id=cid)  # type: ignore[arg-type]

    assert order_priority(order(OrderAction.OPEN)) is Priority.ENTRY
    for action in (OrderAction.CLOSE, OrderAction.STOP, OrderAction.TAKE_PROFIT, None):
        assert order_priority(order(action)) is Priority.CLOSE


def test_one_limiter_per_key_api_and_host_and_the_key_is_not_kept() -> None:
    from trading_pipeline.broker import rate_limit

    key = f"AKTEST{uuid.uuid4().hex}"
    first = shared_limiter("trading", "http://127.0.0.1:1", key)
    assert shared_limiter("trading", "http://127.0.0.1:1", key) is first
    assert shared_limiter("data", "http://127.0.0.1:1", key) is not first
    assert shared_limiter("trading", "http://127.0.0.1:2", key) is not first
    assert shared_limiter("trading", "http://127.0.0.1:1", key + "x") is not first
    assert not any(key in name for name in rate_limit._REGISTRY)


def test_concurrent_answers_never_make_the_budget_look_bigger_than_it_is() -> None:
    """Eight requests in flight at once (concurrent closes): an answer's X-RateLimit-Remaining may not count the
    others yet, and answers arrive out of order; the bucket follows the smallest count, less what is in flight —
    cautious (it may wait for the reset with quota left), never over the server's quota."""
    clock = FakeClock()
    bucket = limiter(limit=20, clock=clock)
    reset = str(int(T0) + 60)
    for _ in range(8):
        bucket.acquire(Priority.CLOSE)
    # The server counted these in turn; the answers come back last-counted first.
    answers = [
        {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": str(20 - n), "X-RateLimit-Reset": reset}
        for n in range(1, 9)
    ]
    for headers in reversed(answers):
        bucket.finish(CaseInsensitiveDict(headers))
    assert bucket.snapshot().server_remaining <= 12  # never more than 20 − 8, whichever answer came first
    spent = 0
    while not clock.waits:
        bucket.acquire(Priority.CLOSE)
        spent += 1
    assert spent - 1 <= 12  # what went before the first wait fits the server's quota…
    assert clock.now >= int(reset)  # …and the next request waited for the server's reset
