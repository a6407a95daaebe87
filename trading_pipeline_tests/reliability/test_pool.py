"""The seed's outage as a regression test: 100 open positions, a broker answering in 300 ms, a pool of 2.

The seed held a DB connection across its broker calls; with a slow broker every connection of a small pool
was checked out by sweeps waiting on HTTP and everything else timed out on the pool. Here three overlapping
sweeps and a reader (what the stop-trigger sensor and the UI do) share a pool of two connections with no
overflow: nobody may wait out the pool timeout, and no connection may be checked out during a broker call.

The pool of two is PostgreSQL's (on SQLite the engine keeps SQLAlchemy's default pool and this process's writers
take turns); the cause of the outage — a connection checked out across a broker call — is not about the backend,
so the same run is checked on SQLite too, without the pool-size assertion.
"""

from __future__ import annotations

import threading

import pytest

from trading_pipeline.broker.guarded import GuardedBroker
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import seed_positions
from trading_pipeline_tests.reliability.invariants import nothing_lost_or_doubled
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols

pytestmark = pytest.mark.reliability  # runs on SQLite and, marked `postgres`, on PostgreSQL

SWEEPS = 3
LATENCY_MS = 300


def test_a_slow_broker_cannot_exhaust_a_pool_of_two(database_url: str) -> None:
    postgres = not database_url.startswith("sqlite")
    with running_sim(realtime=False, n_symbols=300) as sim:
        with Database(database_url) as setup:
            trades = seed_positions(setup, sim, tradable_symbols(sim.market, 100), qty=1)
        gapped = trades[::10]
        for trade in gapped:
            sim.market.gap(trade.symbol, -12)
        sim.faults.configure(latency_ms=LATENCY_MS)
        # A sweep holding its connection across its broker calls holds it for seconds: with three of them on
        # two connections, the others wait out this timeout (the seed's QueuePool TimeoutError).
        db = Database(database_url, pool_size=2, max_overflow=0, pool_timeout=1.0)
        errors: list[BaseException] = []
        done = threading.Event()
        reads = [0]

        def sweep(i: int) -> None:
            broker = GuardedBroker(make_broker(sim, timeout=5.0), db.monitor.broker_call)
            try:
                run_stop_loss_sweep(db, broker, run_id=f"sweep-{i}", now=sim.market.now)
            except BaseException as exc:
                errors.append(exc)

        def reader() -> None:  # the sensor / UI side of the pool, reading all along
            try:
                while not done.is_set():
                    trades_repo.open_trades(db)
                    reads[0] += 1
                    done.wait(0.01)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=sweep, args=(i,)) for i in range(SWEEPS)]
        watcher = threading.Thread(target=reader)
        watcher.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        done.set()
        watcher.join(timeout=30)
        try:
            stats = db.monitor.stats()
            assert errors == [], errors  # e.g. sqlalchemy TimeoutError: QueuePool limit of size 2 overflow 0
            assert stats.checkouts_during_broker_calls == 0
            assert reads[0] > 0
            if postgres:  # the pool of two (SQLite's engine takes no pool size)
                assert stats.peak_checked_out <= 2
            sim.faults.configure(latency_ms=0)
            assert nothing_lost_or_doubled(db, sim, must_be_closed=gapped) == []
            assert len(trades_repo.open_trades(db)) == 100 - len(gapped)
        finally:
            db.dispose()
