"""The fault soak (`trading-pipeline soak`): a simulated trading session of stop-loss sweeps against a faulty broker.

The local sim broker runs in-process on a frozen clock that the soak moves two simulated minutes per run.
Between runs the soak opens positions (straight into the sim, so set-up never fails), gaps some of them
through their stop-loss or take-profit, and configures the sim to fail a share of every Alpaca request at
random: 429 with Retry-After, 500, 503, 504 after processing, timeouts, and "order accepted but the response
dropped" (reset or empty 502). Each run is the product's own sweep (`run_stop_loss_sweep`, preceded by the
reconciliation the stop-loss job runs) through `AlpacaBroker` with short timeouts and backoff.

An observer outside the pipeline reads the true market before every run and notes when each position first
crossed a level. After the session, two runs with the faults off settle what the last faulty runs left
ambiguous, and the invariants are judged from the DB and the broker's book, never from the pipeline's own
counters:

- every crossed position closed within `MAX_CLOSE_DELAY_RUNS` runs of the cross (a cross that healed while
  every sweep in between failed or could not quote it is counted separately, not as lost; one that a sweep
  judged and left open is lost);
- exactly one filled broker order per close, no `client_order_id` twice, no short position at the broker;
- every broker fill recorded in the DB and every DB close backed by a broker fill;
- DB and broker positions reconcile, and no `closing` row is left.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.harness.soak_day import RUN_EVERY, SoakDay
from trading_pipeline.harness.soak_report import SoakReport
from trading_pipeline.settings import SettingsError
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database, redact
from trading_pipeline.store.migrate import upgrade

if TYPE_CHECKING:  # the simulator and the SDK load only when a soak runs, not when the CLI starts
    from trading_pipeline.sim.server import SimBroker

SESSION_MINUTES = 390
# A regular session (Tuesday 24 November 2026), the one the test suite uses: no holiday, no half day.
DEFAULT_SESSION_OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
FAULT_KINDS = ("429", "500", "503", "504", "timeout", "drop", "drop_502")
# Fast but real: the soak runs in simulated time, so waits are kept short; Retry-After is honoured up to
# `max_retry_after` (the adapter's own cap), which keeps a 1 s Retry-After from dominating the wall time.
SOAK_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05, max_retry_after=0.05)
SOAK_REQUEST_TIMEOUT = 0.25


def run_soak(
    minutes: int = 60,
    fault_rate: float = 0.2,
    seed: int = 7,
    *,
    database_url: str | None = None,
    positions: int = 30,
    n_symbols: int = 400,
    request_timeout: float = SOAK_REQUEST_TIMEOUT,
    retry: RetryPolicy = SOAK_RETRY,
    session_open: datetime = DEFAULT_SESSION_OPEN,
    settle_runs: int = 2,
    progress: Callable[[str], None] | None = None,
    inspect: Callable[[Database, SimBroker], None] | None = None,
) -> SoakReport:
    """Run the soak and judge its invariants; `database_url` None → a fresh SQLite file in a temp folder.
    `inspect(db, sim)` is called at the end while the sim broker still runs (tests check it independently)."""
    if minutes < 2 or minutes > SESSION_MINUTES:
        raise SettingsError(f"--minutes must be between 2 and {SESSION_MINUTES} (one session), got {minutes}")
    if not 0.0 <= fault_rate <= 1.0:
        raise SettingsError(f"--fault-rate must be between 0 and 1, got {fault_rate}")
    if positions < 1:
        raise SettingsError(f"--positions must be at least 1, got {positions}")
    plan = _Plan(minutes, fault_rate, seed, positions, n_symbols, request_timeout, retry, session_open, settle_runs)
    if database_url is not None:
        return _run(plan, database_url, progress, inspect)
    with tempfile.TemporaryDirectory(prefix="tp-soak-") as folder:
        return _run(plan, f"sqlite:///{Path(folder) / 'soak.db'}", progress, inspect)


@dataclass(frozen=True)
class _Plan:
    minutes: int
    fault_rate: float
    seed: int
    positions: int
    n_symbols: int
    request_timeout: float
    retry: RetryPolicy
    session_open: datetime
    settle_runs: int


def _run(
    plan: _Plan,
    database_url: str,
    progress: Callable[[str], None] | None,
    inspect: Callable[[Database, SimBroker], None] | None,
) -> SoakReport:
    from trading_pipeline.broker.alpaca import AlpacaBroker
    from trading_pipeline.broker.guarded import GuardedBroker
    from trading_pipeline.sim.server import SimBroker

    started = time.perf_counter()
    say = progress or (lambda text: None)
    report = SoakReport(minutes=plan.minutes, fault_rate=plan.fault_rate, seed=plan.seed, database=redact(database_url))
    rng = random.Random(plan.seed)
    with Database(database_url) as db:
        upgrade(db)
        if any(trades_repo.count_trades_by_status(db).values()):
            raise SettingsError("the soak needs an empty trading DB (it judges every trade in it)")
        with SimBroker(seed=plan.seed, n_symbols=plan.n_symbols, start=plan.session_open, realtime=False) as sim:
            client = AlpacaBroker(
                "soak-key",
                "soak-secret",
                trading_url=sim.url,
                data_url=sim.url,
                timeout=plan.request_timeout,
                retry=plan.retry,
            )
            broker = GuardedBroker(client, db.monitor.broker_call)
            day = SoakDay(db, sim, broker, rng, plan.positions, report, fault_rate=plan.fault_rate)
            _partial_fills(sim, plan.fault_rate)
            sim.faults.configure(
                seed=plan.seed,
                timeout_seconds=plan.request_timeout * 1.5,
                retry_after_seconds=1,
                **{f"rate_{kind}": plan.fault_rate / len(FAULT_KINDS) for kind in FAULT_KINDS},
            )
            total = max(1, plan.minutes // int(RUN_EVERY.total_seconds() // 60))
            for number in range(1, total + 1):
                day.run(number, settle=False)
                if number % 10 == 0 or number == total:
                    say(
                        f"soak: run {number}/{total}, {report.closes_reported_by_sweeps} closes, "
                        f"{report.failed_runs} failed runs"
                    )
            counters = sim.counters()
            sim.faults.clear()
            _partial_fills(sim, 0.0)
            for extra in range(1, plan.settle_runs + 1):
                day.run(total + extra, settle=True)
            report.runs = total
            report.settle_runs = plan.settle_runs
            report.requests = sum(counters["requests"].values())
            report.faults_by_kind = dict(sorted(counters["faults_by_kind"].items()))
            report.faults_injected = sum(report.faults_by_kind.values())
            day.judge(total + plan.settle_runs)
            client.close()
            if inspect is not None:
                inspect(db, sim)
        report.checkouts_during_broker_calls = db.monitor.stats().checkouts_during_broker_calls
    report.wall_seconds = time.perf_counter() - started
    return report


def _partial_fills(sim: SimBroker, rate: float) -> None:
    """Let the sim fill a share of market orders in part at first (Alpaca's paper engine does)."""
    sim.market.configure_partial_fills(rate=rate, fraction=Decimal("0.5"))
