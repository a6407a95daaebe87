"""A stop-loss run SIGKILLed at each step of the close protocol; the next run completes every close.

The sim broker runs here, in the test process, so it outlives the kill; the sweep runs in a child process
(`crash_child.py`) that parks at the chosen step and is killed there. The next run is the schedule's next
one, two simulated minutes later, in this process.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from trading_pipeline.domain.types import TradeStatus
from trading_pipeline.sim.server import SimBroker
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import seed_positions
from trading_pipeline_tests.reliability.crash_child import STEPS
from trading_pipeline_tests.reliability.invariants import nothing_lost_or_doubled
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols

pytestmark = pytest.mark.reliability

CHILD = Path(__file__).with_name("crash_child.py")
POST_ORDERS = "POST /v2/orders"


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


class Child:
    """The sweep's process; its stdout lines arrive on a queue so a read can time out."""

    def __init__(self, database_url: str, sim: SimBroker, step: str, now: datetime) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, str(CHILD), "--database-url", database_url, "--broker-url", sim.url]
        command += ["--now", now.isoformat(), "--crash-at", step]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def next_line(self, timeout: float = 60.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            raise AssertionError(f"the child printed nothing in {timeout} s; stderr:\n{err}") from None

    def proceed(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> int:
        self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=10)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def sells(sim: SimBroker) -> list:
    return [o for o in sim.market.book.orders.values() if o.side == "sell"]


def hold_the_post(child: Child, sim: SimBroker, *, seconds: float) -> None:
    """Let the child send its close order, held `seconds` in the sim before it is processed; return once
    the sim has received it."""
    sim.faults.configure(latency_ms=int(seconds * 1000))
    child.proceed()
    wait_until(lambda: sim.requests(POST_ORDERS) >= 1, "the close order's POST to reach the sim")


def crash(database_url: str, sim: SimBroker, step: str, now: datetime) -> None:
    """Run the sweep in a child and SIGKILL it at `step` (for `in_submit`: while its POST is in flight)."""
    child = Child(database_url, sim, step, now)
    try:
        assert child.next_line() == f"REACHED {step}"
        if step == "in_submit":
            hold_the_post(child, sim, seconds=1.0)
        assert child.kill() == -signal.SIGKILL
    finally:
        child.cleanup()
        sim.faults.configure(latency_ms=0)


@pytest.mark.parametrize("step", STEPS)
def test_a_sweep_killed_at_each_step_is_completed_by_the_next_run(
    database_url: str, db: Database, sim: SimBroker, step: str
) -> None:
    trades = seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=4)
    for trade in trades:
        sim.market.gap(trade.symbol, -15)
    crash(database_url, sim, step, sim.market.now)

    # The kill left exactly the state of its step (so the test exercises what it says).
    counts = trades_repo.count_trades_by_status(db)
    if step == "after_record":  # every close was sent; the fills are recorded after the last submit
        assert (counts[TradeStatus.CLOSED], counts[TradeStatus.OPEN], counts[TradeStatus.CLOSING]) == (1, 0, 2)
    else:
        assert (counts[TradeStatus.CLOSING], counts[TradeStatus.OPEN]) == (1, 2)
    if step == "in_submit":  # the POST outlives its sender: the sim processes it after the kill
        wait_until(lambda: len(sells(sim)) == 1, "the in-flight order to land")
    assert len(sells(sim)) == {"after_claim": 0, "after_record": 3}.get(step, 1)

    sim.market.advance(timedelta(minutes=2))
    result = run_stop_loss_sweep(db, make_broker(sim), run_id="next", now=sim.market.now)

    assert nothing_lost_or_doubled(db, sim, must_be_closed=trades) == []
    assert len(sells(sim)) == 3 and all(order.status == "filled" for order in sells(sim))
    assert result.leftovers_found == (2 if step == "after_record" else 1)
    assert result.closed == (2 if step == "after_record" else 3)


@pytest.mark.postgres
def test_a_run_inside_the_grace_never_resends_an_order_still_in_flight(postgres_server_url: str, sim) -> None:
    """The killed run's POST is still on its way when the next run looks: the claim is left alone, and the
    order, once it lands, is recorded — never sent a second time."""
    from trading_pipeline_tests.conftest import _truncate_all

    _truncate_all(postgres_server_url)
    with Database(postgres_server_url) as db:
        [trade] = seed_positions(db, sim, tradable_symbols(sim.market, 1), qty=4)
        sim.market.gap(trade.symbol, -15)
        crashed_at = sim.market.now
        child = Child(postgres_server_url, sim, "in_submit", crashed_at)
        try:
            assert child.next_line() == "REACHED in_submit"
            hold_the_post(child, sim, seconds=3.0)
            assert child.kill() == -signal.SIGKILL
        finally:
            child.cleanup()
            sim.faults.configure(latency_ms=0)  # the POST already in the sim keeps its 3 s
        early = run_stop_loss_sweep(db, make_broker(sim), run_id="early", now=crashed_at + timedelta(seconds=30))
        assert early.leftovers_found == 1 and early.leftovers_closed == 0  # looked while the order was in flight
        assert early.orders_submitted == 0 and early.leftovers_released == 0
        assert trades_repo.get_trade(db, trade.id).status is TradeStatus.CLOSING
        wait_until(lambda: len(sells(sim)) == 1, "the in-flight order to land")
        sim.market.advance(timedelta(minutes=2))
        later = run_stop_loss_sweep(db, make_broker(sim), run_id="later", now=sim.market.now)
        assert later.leftovers_closed == 1 and later.orders_submitted == 0
        assert nothing_lost_or_doubled(db, sim, must_be_closed=[trade]) == []
        assert len(sells(sim)) == 1
