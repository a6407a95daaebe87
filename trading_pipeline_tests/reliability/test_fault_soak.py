"""A simulated day of stop-loss sweeps with 20% of broker requests failing: nothing lost, nothing doubled.

Faults are the sim broker's own, drawn from a seeded RNG over every Alpaca route: 429 with Retry-After, 500,
503, 504 after processing, timeouts, and "order accepted but the response dropped" (reset / empty 502).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
from datetime import timedelta

import dagster as dg
import pytest

from trading_pipeline.cli.demo import register
from trading_pipeline.definitions import build_definitions, sim_or_live_resources
from trading_pipeline.domain.ids import parse_client_order_id
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.domain.types import ExitReason, TradeStatus
from trading_pipeline.harness.soak import FAULT_KINDS, run_soak
from trading_pipeline.harness.soak_report import MAX_CLOSE_DELAY_RUNS
from trading_pipeline.settings import SettingsError
from trading_pipeline.sim.server import SimBroker
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import run_job, seed_positions
from trading_pipeline_tests.reliability.faulty_broker import REQUEST_TIMEOUT, FastBrokerResource, fault_rates
from trading_pipeline_tests.reliability.invariants import nothing_lost_or_doubled
from trading_pipeline_tests.sim_fixtures import running_sim, tradable_symbols

pytestmark = pytest.mark.reliability


def test_a_faulty_day_of_sweeps_closes_every_cross_once(database_url: str) -> None:
    seen: dict[str, object] = {}

    def inspect(db: Database, sim: SimBroker) -> None:  # from the DB and the broker's book, independently
        seen["problems"] = nothing_lost_or_doubled(db, sim)
        closed = trades_repo.trades_with_status(db, TradeStatus.CLOSED)
        seen["closed"] = len(closed)
        seen["manual"] = sum(1 for t in closed if t.close_reason is ExitReason.MANUAL)  # gone at the broker (drift)
        seen["sells"] = sum(  # our sells: the script's dashboard sells (drift, with their fills) are not ours
            1
            for o in sim.market.book.orders.values()
            if o.side == "sell" and o.filled_qty > 0 and parse_client_order_id(o.client_order_id) is not None
        )

    report = run_soak(40, 0.2, 11, database_url=database_url, positions=20, inspect=inspect)

    assert set(report.faults_by_kind) == set(FAULT_KINDS), report.faults_by_kind  # every kind happened
    assert report.faults_injected >= 0.1 * report.requests
    assert seen["problems"] == [], seen["problems"]
    assert report.crossings >= 15  # the script gapped positions through their levels all day
    assert report.closes == seen["closed"]
    assert seen["closed"] - seen["manual"] == seen["sells"]  # every other close is one filled sell of ours
    # One sell per crossing, plus one more for each close that filled in part and was split.
    assert seen["sells"] - report.partial_fills == report.crossings - report.healed_before_close
    assert report.lost == 0 and report.duplicates == 0, report.problems
    assert max(report.close_delays.values()) <= MAX_CLOSE_DELAY_RUNS, report.close_delays
    assert report.closing_left == 0 and report.reconciliation_clean and report.reconcile_mismatch_runs == 0
    assert report.checkouts_during_broker_calls == 0
    assert report.ok


@pytest.mark.postgres
def test_stop_loss_job_under_faults_through_dagster(postgres_server_url: str, monkeypatch) -> None:
    from trading_pipeline_tests.conftest import _truncate_all

    _truncate_all(postgres_server_url)
    rng = random.Random(5)
    with running_sim(realtime=False, n_symbols=300) as sim, Database(postgres_server_url) as db:
        # A faulted clock falls back to the calendar at this machine's time: here, the simulated session's.
        monkeypatch.setattr("trading_pipeline.steps.clock.wall_clock", lambda: sim.market.now)
        trades = seed_positions(db, sim, tradable_symbols(sim.market, 12), qty=3)
        broker = FastBrokerResource(
            kind="sim", trading_url=sim.url, data_url=sim.url, request_timeout_seconds=REQUEST_TIMEOUT
        )
        defs = build_definitions(sim_or_live_resources(postgres_server_url, broker))
        instance = dg.DagsterInstance.ephemeral()
        sim.faults.configure(seed=5, timeout_seconds=REQUEST_TIMEOUT * 1.5, **fault_rates(0.2))
        gapped_at: dict[str, int] = {}
        closed_at: dict[str, int] = {}
        outcomes = []
        for number in range(1, 7):
            sim.market.advance(timedelta(minutes=2))
            for trade in rng.sample([t for t in trades if str(t.id) not in gapped_at], 2):
                sim.market.gap(trade.symbol, -12)
                gapped_at[str(trade.id)] = number
            outcomes.append(run_job(defs, STOP_LOSS_JOB, instance=instance).success)
            for trade in trades_repo.trades_with_status(db, TradeStatus.CLOSED):
                closed_at.setdefault(str(trade.id), number)
        faults = sum(sim.counters()["faults_by_kind"].values())
        sim.faults.clear()
        sim.market.advance(timedelta(minutes=2))
        assert run_job(defs, STOP_LOSS_JOB, instance=instance).success  # the first clean run settles all
        for trade in trades_repo.trades_with_status(db, TradeStatus.CLOSED):
            closed_at.setdefault(str(trade.id), 7)

        assert faults > 0
        assert sum(outcomes) >= 4, outcomes  # a run may fail loudly when retries run out; most do not
        gapped = [t for t in trades if str(t.id) in gapped_at]
        assert nothing_lost_or_doubled(db, sim, must_be_closed=gapped) == []
        delays = {key: closed_at[key] - gapped_at[key] for key in gapped_at if key in closed_at}
        assert len(delays) == len(gapped) and max(delays.values()) <= MAX_CLOSE_DELAY_RUNS, delays


def test_the_soak_command_prints_the_invariant_table() -> None:
    parser = argparse.ArgumentParser(prog="trading-pipeline")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["soak", "--minutes", "8", "--fault-rate", "0.2", "--seed", "3", "--positions", "8"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = args.handler(args)
    table = out.getvalue()
    assert code == 0, table
    for figure in ("runs", "faults injected", "closes", "duplicates", "lost", "max close delay"):
        assert figure in table
    assert "verdict" in table and "PASS" in table


@pytest.mark.parametrize(
    ("minutes", "fault_rate", "positions"), [(1, 0.2, 5), (391, 0.2, 5), (10, 1.5, 5), (10, -0.1, 5), (10, 0.2, 0)]
)
def test_the_soak_refuses_impossible_settings(minutes: int, fault_rate: float, positions: int) -> None:
    with pytest.raises(SettingsError):
        run_soak(minutes, fault_rate, 1, positions=positions)
