"""AlpacaBroker under injected faults: bounded retries, Retry-After, timeouts, and idempotent order submits."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from trading_pipeline.broker.alpaca import AlpacaBroker
from trading_pipeline.broker.base import BrokerUnavailable, OrderRejected, OrderRequest, OrderType
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.domain.types import OrderSide
from trading_pipeline.sim.server import SimBroker

try:
    from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols
except ImportError:  # run from inside the tests folder
    from sim_fixtures import make_broker, running_sim, tradable_symbols  # type: ignore[no-redef]

POST_ORDERS = "POST /v2/orders"
LOOKUP = "GET /v2/orders:by_client_order_id"


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim(n_symbols=100) as running:
        yield running


@pytest.fixture
def broker(sim: SimBroker) -> AlpacaBroker:
    return make_broker(sim)


@pytest.fixture
def symbol(sim: SimBroker) -> str:
    return tradable_symbols(sim.market, 1)[0]


class RecordingSleep:
    """Records the waits the adapter asks for (and skips them, so a storm test stays fast)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def orders_with_client_id(sim: SimBroker, cid: str) -> int:
    return sum(1 for order in sim.market.book.orders.values() if order.client_order_id == cid)


def buy(symbol: str, cid: str, qty: str = "2") -> OrderRequest:
    return OrderRequest(symbol=symbol, side=OrderSide.BUY, qty=Decimal(qty), client_order_id=cid)


# ---- retries --------------------------------------------------------------------------------------------


def test_a_429_is_retried_after_the_servers_retry_after(sim: SimBroker) -> None:
    sleep = RecordingSleep()
    broker = make_broker(sim, sleep=sleep)
    sim.faults.configure(retry_after_seconds=1)
    sim.faults.fail_next("429", route="GET /v2/account")
    assert broker.account().equity == Decimal("100000")
    assert sleep.waits and sleep.waits[0] >= 1.0  # waited what the server asked, before the retry
    assert sim.requests("GET /v2/account") == 2


def test_a_429_storm_backs_off_honouring_retry_after_then_gives_up(sim: SimBroker) -> None:
    sleep = RecordingSleep()
    broker = make_broker(sim, sleep=sleep, retry=RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05))
    sim.faults.configure(retry_after_seconds=3)
    sim.faults.fail_next("429", count=3, route="GET /v2/clock")
    assert broker.clock().is_open
    assert len(sleep.waits) == 3 and all(wait >= 3 for wait in sleep.waits)
    sim.faults.fail_next("429", count=50, route="GET /v2/clock")
    sim.reset_counters()
    with pytest.raises(BrokerUnavailable, match="after 4 attempts") as gave_up:
        broker.clock()
    assert gave_up.value.status == 429
    assert sim.requests("GET /v2/clock") == 4  # bounded


def test_backoff_grows_exponentially_with_jitter(sim: SimBroker) -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=5, backoff_base=0.1, backoff_cap=10.0)
    broker = make_broker(sim, sleep=sleep, retry=policy)
    sim.faults.fail_next("500", count=4, route="GET /v2/positions")
    assert broker.positions() == []
    assert len(sleep.waits) == 4
    for attempt, wait in enumerate(sleep.waits, start=1):
        ceiling = 0.1 * 2 ** (attempt - 1)
        assert ceiling / 2 <= wait <= ceiling


def test_500_and_non_json_503_are_retried(sim: SimBroker, broker: AlpacaBroker) -> None:
    sim.faults.fail_next("500", route="GET /v2/clock")
    sim.faults.fail_next("503", route="GET /v2/clock")
    assert broker.clock().is_open
    assert sim.requests("GET /v2/clock") == 3
    assert sim.counters()["faults_by_kind"] == {"500": 1, "503": 1}


def test_a_hung_server_does_not_hang_the_client(sim: SimBroker) -> None:
    broker = make_broker(sim, timeout=0.3, retry=RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.02))
    sim.faults.configure(timeout_seconds=30)
    sim.faults.fail_next("timeout", count=5, route="GET /v2/account")
    with pytest.raises(BrokerUnavailable, match="Timeout"):
        broker.account()  # returns at all: each attempt gave up at the client's 0.3 s timeout, not the 30 s hang
    assert sim.requests("GET /v2/account") == 2  # and exactly the policy's two attempts were made


def test_the_sdks_own_retry_is_off(sim: SimBroker, symbol: str) -> None:
    broker = make_broker(sim, retry=RetryPolicy(max_attempts=1))
    sim.faults.fail_next("429", count=5, route=POST_ORDERS)
    with pytest.raises(BrokerUnavailable):
        broker.submit_order(buy(symbol, "no-sdk-retry"))
    # alpaca-py would have slept 3 s and POSTed again by itself: the request count says it did not.
    assert sim.requests(POST_ORDERS) == 1


def test_quotes_are_retried_and_count_every_request(sim: SimBroker, broker: AlpacaBroker) -> None:
    sim.faults.fail_next("503", route="GET /v2/stocks/quotes/latest")
    batch = broker.latest_quotes(["SPY"])
    assert set(batch.quotes) == {"SPY"} and batch.requests == 2


# ---- idempotent submits ---------------------------------------------------------------------------------


def test_dropped_response_resolves_by_lookup_with_exactly_one_order(
    sim: SimBroker, broker: AlpacaBroker, symbol: str
) -> None:
    sim.faults.fail_next("drop", route=POST_ORDERS)  # the order IS created; the response is lost
    order = broker.submit_order(buy(symbol, "tp-drop-0"))
    assert order.client_order_id == "tp-drop-0" and order.is_filled
    assert sim.requests(POST_ORDERS) == 1  # never a blind second POST
    assert sim.requests(LOOKUP) >= 1
    assert orders_with_client_id(sim, "tp-drop-0") == 1


def test_gateway_504_after_processing_is_not_posted_twice(sim: SimBroker, broker: AlpacaBroker, symbol: str) -> None:
    sim.faults.fail_next("504", route=POST_ORDERS)
    order = broker.submit_order(buy(symbol, "tp-504-0"))
    assert order.client_order_id == "tp-504-0"
    assert sim.requests(POST_ORDERS) == 1 and orders_with_client_id(sim, "tp-504-0") == 1


def test_empty_502_after_processing_resolves_by_lookup(sim: SimBroker, broker: AlpacaBroker, symbol: str) -> None:
    sim.faults.fail_next("drop_502", route=POST_ORDERS)
    order = broker.submit_order(buy(symbol, "tp-502-0"))
    assert order.client_order_id == "tp-502-0"
    assert sim.requests(POST_ORDERS) == 1 and orders_with_client_id(sim, "tp-502-0") == 1


def test_timeout_before_processing_is_resent_once_the_lookup_proves_absence(sim: SimBroker, symbol: str) -> None:
    broker = make_broker(sim, timeout=0.3)
    sim.faults.configure(timeout_seconds=5)
    sim.faults.fail_next("timeout", route=POST_ORDERS)  # hangs up without creating the order
    order = broker.submit_order(buy(symbol, "tp-timeout-0"))
    assert order.client_order_id == "tp-timeout-0"
    assert sim.requests(POST_ORDERS) == 2 and sim.requests(LOOKUP) >= 1
    assert orders_with_client_id(sim, "tp-timeout-0") == 1


def test_duplicate_client_order_id_returns_the_existing_order(
    sim: SimBroker, broker: AlpacaBroker, symbol: str
) -> None:
    first = broker.submit_order(buy(symbol, "tp-dup-0"))
    again = broker.submit_order(buy(symbol, "tp-dup-0"))
    assert again.id == first.id and again.is_filled
    assert sim.requests(POST_ORDERS) == 2 and orders_with_client_id(sim, "tp-dup-0") == 1
    with pytest.raises(OrderRejected, match="already used"):
        broker.submit_order(OrderRequest(symbol="SPY", side=OrderSide.SELL, qty=Decimal(1), client_order_id="tp-dup-0"))


def test_ambiguous_submit_with_a_failing_lookup_says_the_outcome_is_unknown(
    sim: SimBroker, broker: AlpacaBroker, symbol: str
) -> None:
    sim.faults.fail_next("drop", route=POST_ORDERS)
    sim.faults.fail_next("500", count=20, route=LOOKUP)
    with pytest.raises(BrokerUnavailable, match="outcome unknown"):
        broker.submit_order(buy(symbol, "tp-unknown-0"))
    assert sim.requests(POST_ORDERS) == 1  # no second POST while it may exist
    assert orders_with_client_id(sim, "tp-unknown-0") == 1
    sim.faults.clear()
    assert broker.order_by_client_order_id("tp-unknown-0") is not None  # reconciliation finds it later


def test_random_fault_storm_never_creates_a_second_order(sim: SimBroker, symbol: str) -> None:
    broker = make_broker(sim, timeout=0.3, retry=RetryPolicy(max_attempts=8, backoff_base=0.005, backoff_cap=0.02))
    sim.faults.configure(
        seed=11,
        rate_429=0.15,
        rate_500=0.1,
        rate_504=0.1,
        rate_drop=0.15,
        rate_drop_502=0.1,
        timeout_seconds=0.5,
        rate_timeout=0.05,
        retry_after_seconds=0,
    )
    cids = [f"tp-storm-{i}" for i in range(15)]
    outcomes = []
    for cid in cids:
        try:
            outcomes.append(broker.submit_order(buy(symbol, cid, qty="1")).client_order_id)
        except BrokerUnavailable:
            outcomes.append(None)
    assert all(orders_with_client_id(sim, cid) <= 1 for cid in cids)
    assert sum(outcome is not None for outcome in outcomes) >= 12
    assert sim.counters()["faults_by_kind"]  # the storm did happen


# ---- cancel and close under faults ----------------------------------------------------------------------


def test_a_cancel_whose_response_was_lost_is_not_an_error(sim: SimBroker, broker: AlpacaBroker, symbol: str) -> None:
    quote = sim.market.quote(symbol)
    assert quote is not None
    resting = broker.submit_order(
        OrderRequest(
            symbol=symbol,
            side=OrderSide.BUY,
            qty=Decimal(1),
            client_order_id="tp-rest-0",
            type=OrderType.LIMIT,
            limit_price=(quote.bid / 2).quantize(Decimal("0.01")),
        )
    )
    sim.faults.fail_next("drop", route="DELETE /v2/orders/{order_id}")  # canceled, answer lost
    broker.cancel_order(resting.id)  # the retry meets "already canceled": done, not an error
    assert sim.requests("DELETE /v2/orders/{order_id}") == 2
    assert sim.market.book.order(resting.id).status == "canceled"


def test_close_position_retries_a_429_but_not_an_ambiguous_failure(
    sim: SimBroker, broker: AlpacaBroker, symbol: str
) -> None:
    broker.submit_order(buy(symbol, "tp-close-entry-0", qty="3"))
    sim.faults.configure(retry_after_seconds=0)
    sim.faults.fail_next("429", route="DELETE /v2/positions/{symbol}")
    sim.faults.fail_next("drop", route="DELETE /v2/positions/{symbol}")
    with pytest.raises(BrokerUnavailable, match="outcome unknown"):
        broker.close_position(symbol)
    assert sim.requests("DELETE /v2/positions/{symbol}") == 2  # the 429 retried once, the drop not at all
    assert symbol not in sim.market.book.positions  # the close went through; the caller must look, not resend
