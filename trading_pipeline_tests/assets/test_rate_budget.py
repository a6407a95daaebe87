"""The rate budget end to end: the sim enforces a small Alpaca limit, the product's limiter paces the real
alpaca-py client by the sim's X-RateLimit-* headers, and the sim never has to answer a 429. When the budget is
short, closes go and entries are refused before anything is sent."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from trading_pipeline.broker.alpaca import AlpacaBroker
from trading_pipeline.broker.base import OrderRequest, RateBudgetExhausted
from trading_pipeline.definitions import build_definitions, sim_or_live_resources
from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.domain.types import OrderAction, OrderSide, TradeStatus
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.strategy import StrategyConfig
from trading_pipeline.sim.rate_limit import RateLimitConfig
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import metadata, run_job, seed_positions
from trading_pipeline_tests.sim_fixtures import FAST_RETRY, running_sim, tradable_symbols

POST_ORDERS = "POST /v2/orders"


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def fresh_key() -> str:
    """The process's limiters are shared per key and host: a key of its own gives each test a fresh budget."""
    return f"rate-test-{uuid.uuid4().hex[:12]}"


def paced_broker(sim) -> AlpacaBroker:
    return AlpacaBroker(fresh_key(), "secret", trading_url=sim.url, data_url=sim.url, timeout=2.0, retry=FAST_RETRY)


def requests_served(sim) -> int:
    return sum(sim.rate_limit.counters()["allowed"].values())


def test_a_stop_loss_run_paced_by_the_servers_headers_never_gets_a_429(database_url: str, db: Database, sim) -> None:
    symbols = tradable_symbols(sim.market, 20)
    seed_positions(db, sim, symbols)
    # 15 trading requests per window, as Alpaca's 200/min would be for a bigger run; a 2 s window keeps the
    # test short (the limiter learns the window from X-RateLimit-Reset, not from a setting).
    sim.rate_limit.configure(RateLimitConfig(trading=15, data=15, window_seconds=2.0))
    broker = BrokerResource(
        kind="sim", trading_url=sim.url, data_url=sim.url, request_timeout_seconds=5, api_key=fresh_key()
    )
    strategy = StrategyConfig(protective_orders=False)
    defs = build_definitions(sim_or_live_resources(database_url, broker, strategy=strategy))
    sim.market.advance(timedelta(minutes=2))
    for symbol in symbols:
        sim.market.gap(symbol, -20)

    sweep = run_job(defs, STOP_LOSS_JOB)

    assert sweep.success, sweep
    assert metadata(sweep, "closes")["closed_stop_loss"] == 20
    by_status = trades_repo.count_trades_by_status(db)
    assert {status: n for status, n in by_status.items() if n} == {TradeStatus.CLOSED: 20}
    assert not sim.market.book.positions
    assert requests_served(sim) > 15  # more than one window's quota: the run had to be paced
    assert sim.rate_limit.counters()["limited_total"] == 0, sim.rate_limit.counters()
    assert sim.counters()["faults_by_kind"] == {}
    print(f"paced run: {requests_served(sim)} requests served, none refused")


def test_with_the_budget_short_a_close_goes_and_an_entry_is_refused_unsent(sim) -> None:
    held, fresh = tradable_symbols(sim.market, 2)
    sim.market.submit_order({"symbol": held, "qty": "5", "side": "buy", "type": "market", "time_in_force": "day"})
    sim.rate_limit.configure(RateLimitConfig(trading=12, window_seconds=60.0))  # no refill during the test
    broker = paced_broker(sim)
    for _ in range(9):
        broker.clock()  # reconciliation spends the budget down to 3: the entries' reserve (25 % of 12)
    assert broker.trading_limiter.snapshot().server_remaining == 3

    trade = uuid.uuid4()
    entry = OrderRequest(fresh, OrderSide.BUY, Decimal(1), client_order_id(trade, OrderAction.OPEN))
    with pytest.raises(RateBudgetExhausted, match="no entry rate budget"):
        broker.submit_order(entry)
    assert sim.requests(POST_ORDERS) == 0  # refused before sending: no order to reconcile

    close = OrderRequest(held, OrderSide.SELL, Decimal(5), client_order_id(uuid.uuid4(), OrderAction.CLOSE))
    order = broker.submit_order(close)
    assert order.symbol == held and sim.requests(POST_ORDERS) == 1
    assert held not in sim.market.book.positions
    assert sim.rate_limit.counters()["limited_total"] == 0, sim.rate_limit.counters()
    assert broker.trading_limiter.snapshot().refused == {"ENTRY": 1}
