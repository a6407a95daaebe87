"""Database connections that die during a stop-loss run, on both backends.

On PostgreSQL the server terminates them (`pg_terminate_backend`); on SQLite the driver's connection is closed
under the pool (what a crashed file handle looks like to SQLAlchemy: "Cannot operate on a closed database", a
disconnect it recognises). Neither behaviour below is about PostgreSQL, so a contributor without one runs the
SQLite half: between transactions the pool's pre-ping replaces a dead connection and the run goes on; inside a
transaction the run fails loudly, the transaction rolls back, the other symbols still close, and the next run
finishes the close from where the protocol left it. Never a half-written trade.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.domain.types import TradeStatus
from trading_pipeline.sim.server import SimBroker
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import pipeline_definitions, run_job, seed_positions
from trading_pipeline_tests.reliability.invariants import nothing_lost_or_doubled
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols

pytestmark = pytest.mark.reliability  # each test runs on SQLite and, marked `postgres`, on PostgreSQL

# What the run's error says when its connection died: the server's message, or the driver's.
DIED = {"postgresql": "terminating connection", "sqlite": "closed database"}

# Where a connection dies, recognised by the statement the run is about to send.
KILL_POINTS = {
    "claim": re.compile(r"^UPDATE trades SET status=.*close_trigger_price=", re.S),
    "order_upsert": re.compile(r"^INSERT INTO orders ", re.S),
    "record": re.compile(r"^UPDATE trades SET status=.*close_price=", re.S),
}


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


@pytest.fixture
def url(database_url: str) -> str:
    """A migrated, empty trading DB on each backend (conftest's `database_url`)."""
    return database_url


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def kill_connection(url: str, dbapi_connection: Any) -> None:
    """The connection dies under the pool: terminated by the server, or closed under SQLAlchemy on SQLite."""
    if is_sqlite(url):
        dbapi_connection.close()
    else:
        terminate(url, dbapi_connection.info.backend_pid)


class IdleConnections:
    """The DBAPI connections resting in an engine's pool (checked in, not out), tracked by pool events."""

    def __init__(self, engine: sa.Engine) -> None:
        self.idle: dict[int, Any] = {}
        event.listen(engine, "checkin", lambda dbapi, record: self.idle.__setitem__(id(dbapi), dbapi))
        event.listen(engine, "checkout", lambda dbapi, record, proxy: self.idle.pop(id(dbapi), None))

    def kill_all(self) -> int:
        killed = list(self.idle.values())
        self.idle.clear()
        for dbapi in killed:
            dbapi.close()
        return len(killed)


def terminate(url: str, pid: int | None = None) -> int:
    """pg_terminate_backend on one backend, or on every other backend of the test database."""
    database = make_url(url).database
    with psycopg.connect(libpq(url), autocommit=True) as admin:
        if pid is not None:
            return int(admin.execute("SELECT pg_terminate_backend(%s)::int", (pid,)).fetchone()[0])
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
        return len(rows)


class KillOnce:
    """An engine listener that terminates the connection about to run the first statement matching `point`."""

    def __init__(self, url: str, point: str) -> None:
        self.url = url
        self.pattern = KILL_POINTS[point]
        self.fired = False

    def __call__(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if self.fired or not self.pattern.match(statement):
            return
        self.fired = True
        kill_connection(self.url, conn.connection.dbapi_connection)


def half_written(db: Database) -> list[str]:
    """Trades whose close fields contradict their status."""
    problems = []
    for status in TradeStatus:
        for trade in trades_repo.trades_with_status(db, status):
            closed_fields = trade.close_price is not None or trade.closed_at is not None
            if (status is TradeStatus.CLOSED) != closed_fields:
                problems.append(f"{trade.symbol} {status.value}: close_price {trade.close_price}")
            if status is TradeStatus.CLOSING and trade.close_client_order_id is None:
                problems.append(f"{trade.symbol} closing without a client_order_id")
    return problems


class KillingBroker:
    """The real broker; before its first order it kills every idle connection of the test database (on
    PostgreSQL every other backend of it, on SQLite every connection resting in the run's pool)."""

    def __init__(self, inner: Any, url: str, idle: IdleConnections) -> None:
        self._inner = inner
        self._url = url
        self._idle = idle
        self.terminated = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def submit_order(self, request: Any, **options: Any) -> Any:
        if not self.terminated:
            self.terminated = self._idle.kill_all() if is_sqlite(self._url) else terminate(self._url)
        return self._inner.submit_order(request, **options)


def test_connections_terminated_between_transactions_are_replaced(url: str, sim: SimBroker) -> None:
    with Database(url) as db:
        trades = seed_positions(db, sim, tradable_symbols(sim.market, 4), qty=3)
        for trade in trades:
            sim.market.gap(trade.symbol, -12)
        broker = KillingBroker(make_broker(sim), url, IdleConnections(db.engine))
        # One close at a time: the test kills the pool's *idle* connections between transactions, and a
        # concurrent close would have them in use (a connection killed inside a transaction is the next test).
        result = run_stop_loss_sweep(db, broker, run_id="survivor", now=sim.market.now, close_concurrency=1)
        assert broker.terminated >= 1  # the pool's idle connection really died mid-run
        assert result.closed == 4 and not result.failures
        assert nothing_lost_or_doubled(db, sim, must_be_closed=trades) == []


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_a_connection_killed_inside_a_transaction_fails_the_run_and_the_next_run_completes(
    url: str, sim: SimBroker, point: str
) -> None:
    with Database(url) as db:
        trades = seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=3)
        for trade in trades:
            sim.market.gap(trade.symbol, -12)
        kill = KillOnce(url, point)
        event.listen(db.engine, "before_cursor_execute", kill)
        try:
            with pytest.raises(sa.exc.DBAPIError):
                run_stop_loss_sweep(db, make_broker(sim), run_id="doomed", now=sim.market.now)
        finally:
            event.remove(db.engine, "before_cursor_execute", kill)
        assert kill.fired
        assert half_written(db) == []
        sells = [o for o in sim.market.book.orders.values() if o.side == "sell"]
        counts = trades_repo.count_trades_by_status(db)
        # The three symbols close at once: the killed transaction fails its own close (and then the run), the
        # other two closes complete.
        assert counts[TradeStatus.CLOSED] == 2
        if point == "claim":  # rolled back: still open, nothing sent for it
            assert counts[TradeStatus.OPEN] == 1 and len(sells) == 2
        else:  # claimed and sent; the record never committed
            assert counts[TradeStatus.CLOSING] == 1 and len(sells) == 3
            [doomed] = trades_repo.closing_trades(db)
            stored = orders_repo.get_order(db, doomed.close_client_order_id or "")
            assert (stored is None) == (point == "order_upsert")

        sim.market.advance(timedelta(minutes=2))
        run_stop_loss_sweep(db, make_broker(sim), run_id="next", now=sim.market.now)
        assert nothing_lost_or_doubled(db, sim, must_be_closed=trades) == []
        assert half_written(db) == []


def test_a_stop_loss_job_whose_connection_dies_fails_loudly_and_the_next_one_succeeds(url: str, sim: SimBroker) -> None:
    with Database(url) as db:
        trades = seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=3)
    for trade in trades:
        sim.market.gap(trade.symbol, -12)
    defs = pipeline_definitions(url, sim)
    instance = dg.DagsterInstance.ephemeral()
    kill = KillOnce(url, "record")
    event.listen(sa.engine.Engine, "before_cursor_execute", kill)  # every engine, including the run's own
    try:
        doomed = run_job(defs, STOP_LOSS_JOB, instance=instance)
    finally:
        event.remove(sa.engine.Engine, "before_cursor_execute", kill)
    assert kill.fired and not doomed.success
    failure = next(e for e in doomed.all_events if e.is_step_failure)
    died = DIED[make_url(url).get_backend_name()]
    assert failure.step_key == "closes" and died in str(failure.step_failure_data.error)

    sim.market.advance(timedelta(minutes=2))
    assert run_job(defs, STOP_LOSS_JOB, instance=instance).success
    with Database(url) as db:
        assert nothing_lost_or_doubled(db, sim, must_be_closed=trades) == []
        assert half_written(db) == []
