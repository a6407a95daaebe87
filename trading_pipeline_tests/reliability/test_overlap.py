"""Three stop-loss runs started at once: each close is claimed, sent and recorded once.

The claim is a conditional UPDATE, which either backend serialises (PostgreSQL by row locks, SQLite by its one
writer at a time), so the sweeps run on both: SQLite for a contributor without PostgreSQL, PostgreSQL marked
`postgres`. The three whole jobs stay on PostgreSQL: on SQLite one of them now and then fails its blocking
"beyond its stop" check while another run's close of the same position is still in flight (1 run in 3 here),
which is about the check's timing under overlap, not about the claim this module tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import dagster as dg
import pytest

from trading_pipeline.broker.base import BrokerError
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.sim.server import SimBroker
from trading_pipeline.steps.closes import SweepResult, run_stop_loss_sweep
from trading_pipeline.store.database import Database
from trading_pipeline_tests.conftest import _truncate_all
from trading_pipeline_tests.pipeline_fixtures import metadata, pipeline_definitions, run_job, seed_positions
from trading_pipeline_tests.reliability.faulty_broker import FAST_RETRY, REQUEST_TIMEOUT, fault_rates
from trading_pipeline_tests.reliability.invariants import nothing_lost_or_doubled
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols

pytestmark = pytest.mark.reliability  # each test runs on SQLite and, marked `postgres`, on PostgreSQL
RUNS = 3


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


@pytest.fixture
def url(database_url: str) -> str:
    """A migrated, empty trading DB on each backend (conftest's `database_url`)."""
    return database_url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    _truncate_all(postgres_server_url)
    return postgres_server_url


def all_at_once(work: Callable[[int], Any]) -> list[Any]:
    """Start `RUNS` threads behind one barrier; return what each returned (re-raising the first error)."""
    barrier = threading.Barrier(RUNS)
    results: list[Any] = [None] * RUNS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"overlap-{i}") for i in range(RUNS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


@pytest.mark.postgres
def test_three_stop_loss_jobs_at_once_through_dagster(postgres_url: str, sim: SimBroker) -> None:
    url = postgres_url
    with Database(url) as db:
        trades = seed_positions(db, sim, tradable_symbols(sim.market, 24), qty=2)
    for trade in trades:
        sim.market.gap(trade.symbol, -12)
    defs = pipeline_definitions(url, sim)
    results = all_at_once(lambda i: run_job(defs, STOP_LOSS_JOB, instance=dg.DagsterInstance.ephemeral()))

    assert all(result.success for result in results)
    closes = [metadata(result, "closes") for result in results]
    assert sum(c["closed"] for c in closes) == len(trades)  # every close recorded by exactly one run
    assert sum(c["orders_submitted"] for c in closes) == len(trades)
    with Database(url) as db:
        assert nothing_lost_or_doubled(db, sim, must_be_closed=trades) == []


def test_three_sweeps_at_once_under_broker_faults(url: str, sim: SimBroker) -> None:
    with Database(url) as db:
        trades = seed_positions(db, sim, tradable_symbols(sim.market, 30), qty=2)
    for trade in trades:
        sim.market.gap(trade.symbol, -12)
    sim.faults.configure(seed=3, timeout_seconds=REQUEST_TIMEOUT * 1.5, **fault_rates(0.15))
    crossed_at = sim.market.now

    def sweep(i: int) -> SweepResult | Exception:
        with Database(url) as db:
            broker = make_broker(sim, timeout=REQUEST_TIMEOUT, retry=FAST_RETRY)
            try:
                return run_stop_loss_sweep(db, broker, run_id=f"overlap-{i}", now=crossed_at)
            except BrokerError as exc:  # a run whose retries ran out fails; the others and the next run go on
                return exc
            finally:
                broker.close()

    results = all_at_once(sweep)
    sweeps = [r for r in results if isinstance(r, SweepResult)]
    assert sweeps, results
    assert sum(r.claimed for r in sweeps) == len(trades)  # one claim per trade, whoever won it
    assert sim.counters()["faults_by_kind"]

    sim.faults.clear()
    sim.market.advance(timedelta(minutes=2))
    with Database(url) as db:
        run_stop_loss_sweep(db, make_broker(sim), run_id="next", now=sim.market.now)
        assert nothing_lost_or_doubled(db, sim, must_be_closed=trades) == []
