"""`trading-pipeline demo`: a simulated trading session run through Dagster, end to end, in about a minute.

It starts the local sim broker in-process, uses a fresh SQLite trading DB and a project-local Dagster
instance (so the runs stay visible in `dagster dev`), runs the trading-day job at the open, then a
stop-loss run every 2 simulated minutes, with a scripted gap-down through a stop and a jump through a
take-profit. It ends with an outcome report — outcomes first — and exits ≠ 0 if any run failed or any
position ended beyond its stop.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import dagster as dg

from trading_pipeline.automation.schedules import SCHEDULE_NAME_TAG, stop_loss_schedule, trading_day_schedule
from trading_pipeline.automation.sensors import stop_trigger_sensor
from trading_pipeline.broker.alpaca import AlpacaBroker
from trading_pipeline.checks.closes import beyond_stop
from trading_pipeline.definitions import build_definitions, sim_or_live_resources
from trading_pipeline.domain.names import STOP_LOSS_JOB, TRADING_DAY_JOB
from trading_pipeline.domain.types import ExitReason, OrderSide, TradeStatus
from trading_pipeline.harness.demo_report import DemoReport, clock_text, reasons_text
from trading_pipeline.harness.demo_setup import (
    DEFAULT_SESSION,
    fresh_trading_db,
    prepare_dagster_home,
    session_span,
    write_ui_env,
)
from trading_pipeline.harness.run_results import asset_metadata, failed_checks, run_error, stop_loss_run_metadata
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.strategy import StrategyConfig
from trading_pipeline.sim.server import SimBroker
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline.store.migrate import upgrade

RUN_EVERY = timedelta(minutes=2)
# The stop-trigger sensor looks every 30 simulated s here (the daemon's interval is 10 s): a third of the ticks
# keeps the demo short, and the scripted gap is still seen before the next scheduled run.
SENSOR_TICK = timedelta(seconds=30)
EVENT_LEAD = timedelta(seconds=20)  # scripted events land 20 s before a sensor tick
DEFAULT_MINUTES = 60
QUALIFIED_CLASS = re.compile(r"(?<![\w.])(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*: ")  # "pkg.mod.Error: " before a message
SIM_TIME_TAG = "trading_pipeline/sim_time"  # the simulated session instant the run stood at
SENSOR_NAME_TAG = "dagster/sensor_name"
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def launched_by(kind: str, name: str) -> dict[str, str]:
    """The tags Dagster itself sets on runs its daemon launches, so the UI shows the schedule or sensor as the
    launcher instead of "Manually launched" (the demo evaluates them itself, in simulated time)."""
    return {SCHEDULE_NAME_TAG if kind == "schedule" else SENSOR_NAME_TAG: name}


@dataclass
class DemoOptions:
    data_dir: Path
    seed: int = 7
    minutes: int = DEFAULT_MINUTES
    full_day: bool = False
    session_date: date | None = None
    n_symbols: int = 3000
    sample_size: int = 300
    max_positions: int = 20
    protective_orders: bool = True  # bracket entries: the broker holds each stop (second line of defence)
    strategy: str = "momentum"  # a built-in or entry-point name, or package.module:attribute
    strategy_params: str = ""  # JSON object, validated by the strategy's own Params
    env_file: Path | None = None  # where to write the .env that points `dagster dev` at the demo's DB and home


@dataclass
class RunOutcome:
    number: int
    at: datetime
    success: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    error: str = ""
    trigger: bool = False  # requested by the stop-trigger sensor, not the 2-minute schedule
    seconds: float = 0.0
    symbols: str = ""


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.outcomes: list[RunOutcome] = []
        self.scripted: dict[str, str] = {}
        self.sensor_evaluations = 0
        self.gap_trade: uuid.UUID | None = None
        self.gap_at: datetime | None = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run(self) -> DemoReport:
        started = time.perf_counter()
        options = self.options
        day = options.session_date or DEFAULT_SESSION
        opened, closed = session_span(day)
        end = closed if options.full_day else min(closed, opened + timedelta(minutes=options.minutes))
        span = "full session" if end == closed else f"first {int((end - opened).total_seconds() // 60)} minutes"
        home = prepare_dagster_home(options.data_dir)
        db_path = fresh_trading_db(options.data_dir)
        db_url = f"sqlite:///{db_path}"
        with Database(db_url) as db:
            upgrade(db)
        instance = dg.DagsterInstance.from_config(str(home))
        self.say(f"demo: NYSE session {day} ({span}), sim broker seed {options.seed}, {options.n_symbols} symbols")
        self.say(f"demo: trading DB {db_path} (fresh), Dagster instance {home}")
        write_ui_env(options.env_file, home=home, database_url=db_url)
        with SimBroker(seed=options.seed, n_symbols=options.n_symbols, start=opened, realtime=False) as sim:
            self._sim = sim
            self._resources = self.resources(db_url, sim.url)
            defs = build_definitions(self._resources)
            with Database(db_url) as db, instance:
                self.trading_day(defs, instance, day)
                self.stop_loss_loop(defs, instance, db, sim, opened, end)
                report = self.report(db, sim, day, span, started, home, db_path)
        return report

    def resources(self, db_url: str, sim_url: str) -> dict[str, dg.ConfigurableResource]:
        strategy = StrategyConfig(
            max_open_positions=self.options.max_positions,
            max_notional_per_position=4000.0,
            max_total_notional=90000.0,
            protective_orders=self.options.protective_orders,
            max_daily_loss=5000.0,
            name=self.options.strategy,
            params=self.options.strategy_params,
        )
        broker = BrokerResource(kind="sim", trading_url=sim_url, data_url=sim_url)
        return sim_or_live_resources(db_url, broker, strategy=strategy)

    def trading_day(self, defs: dg.Definitions, instance: dg.DagsterInstance, day: date) -> None:
        job = defs.resolve_job_def(TRADING_DAY_JOB)
        config = {**QUIET_LOGS, "ops": {"universe": {"config": {"sample_size": self.options.sample_size}}}}
        tags = {**launched_by("schedule", trading_day_schedule.name), SIM_TIME_TAG: self._sim.market.now.isoformat()}
        result = job.execute_in_process(
            instance=instance, partition_key=day.isoformat(), run_config=config, raise_on_error=False, tags=tags
        )
        entries = asset_metadata(result, "entries")
        universe = asset_metadata(result, "universe")
        status = "✓" if result.success else "✗ FAILED"
        self.say(
            f"{clock_text(self._sim.market.now)}  trading day {status}: universe {universe.get('sample_size', '?')} of "
            f"{universe.get('universe_size', '?')} symbols → {entries.get('proposed', 0)} candidates → "
            f"{entries.get('opened', 0)} positions opened"
        )
        if not result.success:  # the one line that says what broke and how to fix it (a bad strategy, say)
            self.say(f"{' ' * 13}{QUALIFIED_CLASS.sub('', run_error(result))}; the stop-loss runs go on")
        self.outcomes.append(RunOutcome(0, self._sim.market.now, result.success, entries, failed_checks(result)))

    def stop_loss_loop(
        self,
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        db: Database,
        sim: SimBroker,
        opened: datetime,
        end: datetime,
    ) -> None:
        """Every 30 simulated seconds the stop-trigger sensor looks; every 2 minutes the schedule's run goes.

        Scripted events happen 40 s into an interval, between sensor ticks, as real gaps do."""
        job = defs.resolve_job_def(STOP_LOSS_JOB)
        total = int((end - opened) / RUN_EVERY)
        ticks = int(RUN_EVERY / SENSOR_TICK)
        events = self.scripted_events(db, sim, total)
        for number in range(1, total + 1):
            for tick in range(1, ticks + 1):
                if tick == 2 and number in events:
                    sim.market.advance(SENSOR_TICK - EVENT_LEAD)
                    for event in events.pop(number):
                        event()
                    sim.market.advance(EVENT_LEAD)
                else:
                    sim.market.advance(SENSOR_TICK)
                if tick < ticks:  # on the 2-minute boundary the scheduled run goes instead
                    self.stop_trigger_tick(job, instance, number, total)
            self.scheduled_tick(job, instance, number, total)

    def scheduled_tick(self, job: dg.JobDefinition, instance: dg.DagsterInstance, number: int, total: int) -> None:
        """The real stop_loss_schedule evaluated at the simulated instant (it asks the sim broker's clock);
        its run carries the schedule as launcher, so the UI shows it as Dagster's would."""
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=self._sim.market.now,
            resources={"broker": self._resources["broker"]},
        ) as context:
            request = stop_loss_schedule(context)
        if isinstance(request, dg.RunRequest):
            self.execute(
                job, instance, number, total, tags={**request.tags, **launched_by("schedule", stop_loss_schedule.name)}
            )
        else:
            self.say(f"{clock_text(self._sim.market.now)}  stop-loss schedule skipped: {request.skip_message}")

    def stop_trigger_tick(self, job: dg.JobDefinition, instance: dg.DagsterInstance, number: int, total: int) -> None:
        resources = {"database": self._resources["database"], "broker": self._resources["broker"]}
        logging.disable(logging.INFO)  # the sensor's log line would repeat the progress line below
        try:
            with dg.build_sensor_context(instance=instance, resources=resources) as context:
                request = stop_trigger_sensor(context)
        finally:
            logging.disable(logging.NOTSET)
        self.sensor_evaluations += 1
        if isinstance(request, dg.RunRequest):
            tags = {**request.tags, **launched_by("sensor", stop_trigger_sensor.name)}
            self.execute(job, instance, number, total, tags=tags, trigger=True)

    def execute(
        self,
        job: dg.JobDefinition,
        instance: dg.DagsterInstance,
        number: int,
        total: int,
        *,
        tags: dict[str, str],
        trigger: bool = False,
    ) -> None:
        started = time.perf_counter()
        tags = {**tags, SIM_TIME_TAG: self._sim.market.now.isoformat()}
        result = job.execute_in_process(instance=instance, run_config=QUIET_LOGS, tags=tags, raise_on_error=False)
        outcome = RunOutcome(
            number,
            self._sim.market.now,
            result.success,
            stop_loss_run_metadata(result),
            failed_checks(result),
            run_error(result),
            trigger=trigger,
            seconds=time.perf_counter() - started,
            symbols=tags.get("trading_pipeline/trigger_symbols", ""),
        )
        self.outcomes.append(outcome)
        self.progress(outcome, total)

    def scripted_events(self, db: Database, sim: SimBroker, total: int) -> dict[int, list[Callable[[], None]]]:
        """A gap-down through one position's stop and a jump through another's take-profit."""
        trades = sorted(trades_repo.open_trades(db), key=lambda t: t.symbol)  # same seed → same script
        events: dict[int, list[Callable[[], None]]] = {}
        if not trades:
            self.say("demo: no positions were opened, so no scripted stop or take-profit")
            return events
        gap, jump = trades[0], trades[-1] if len(trades) > 1 else None
        at_gap, at_jump = max(1, min(5, total)), max(1, min(10, total))

        def gap_down() -> None:
            sim.market.gap(gap.symbol, -15)
            self.gap_trade, self.gap_at = gap.id, sim.market.now
            self.scripted["gap_down"] = (
                f"{gap.symbol} gapped −15% through its stop {gap.stop_loss} at {clock_text(sim.market.now)}"
            )
            self.say(f"{clock_text(sim.market.now)}  ⚡ scripted: {gap.symbol} gaps −15% (stop {gap.stop_loss})")

        events.setdefault(at_gap, []).append(gap_down)
        if jump is not None and jump.take_profit is not None:
            target = jump.take_profit * Decimal("1.01")

            def jump_up() -> None:
                sim.market.set_price(jump.symbol, target, target + Decimal("0.02"))
                self.scripted["take_profit"] = (
                    f"{jump.symbol} jumped to {target:.2f} through {jump.take_profit} at {clock_text(sim.market.now)}"
                )
                self.say(
                    f"{clock_text(sim.market.now)}  ⚡ scripted: {jump.symbol} jumps to {target:.2f} "
                    f"(take-profit {jump.take_profit})"
                )

            events.setdefault(at_jump, []).append(jump_up)
        return events

    def progress(self, outcome: RunOutcome, total: int) -> None:
        meta = outcome.metadata
        closed = int(meta.get("closed", 0))
        eventful = closed or not outcome.success or outcome.failed_checks or outcome.trigger
        if not (eventful or outcome.number % 10 == 0 or outcome.number == total):
            return
        mark = "✓" if outcome.success and not outcome.failed_checks else "✗"
        what = (
            f"stop trigger → run {mark} ({outcome.symbols})"
            if outcome.trigger
            else (f"stop-loss run {outcome.number:>3}/{total} {mark}")
        )
        line = (
            f"{clock_text(outcome.at)}  {what}  checked {meta.get('positions_checked', 0)} positions, closed {closed}"
        )
        if closed:
            line += f" ({reasons_text(meta)})"
        if outcome.failed_checks:
            line += f"  FAILED CHECKS: {', '.join(outcome.failed_checks)}"
        if not outcome.success:
            line += f"  RUN FAILED: {outcome.error}"
        self.say(line)

    def report(
        self, db: Database, sim: SimBroker, day: date, span: str, started: float, home: Path, db_path: Path
    ) -> DemoReport:
        counts = trades_repo.count_trades_by_status(db)
        sides = orders_repo.count_orders_by_side(db)
        oldest = trades_repo.oldest_open_entry(db)
        stop_runs = [o for o in self.outcomes if o.number > 0]
        return DemoReport(
            session_date=day,
            span=span,
            positions_opened=counts[TradeStatus.OPEN] + counts[TradeStatus.CLOSING] + counts[TradeStatus.CLOSED],
            closes_by_reason=trades_repo.closes_by_reason(db),
            buys=sides[OrderSide.BUY],
            sells=sides[OrderSide.SELL],
            open_positions=counts[TradeStatus.OPEN],
            oldest_open_minutes=(sim.market.now - oldest).total_seconds() / 60 if oldest else None,
            quote_requests=sim.requests("GET /v2/stocks/quotes/latest"),
            positions_checked=sum(int(o.metadata.get("positions_checked", 0)) for o in stop_runs),
            longest_transaction_ms=max(
                (float(o.metadata.get("db_longest_transaction_ms", 0)) for o in stop_runs), default=0.0
            ),
            checkouts_during_broker_calls=sum(
                int(o.metadata.get("db_checkouts_during_broker_calls", 0)) for o in stop_runs
            ),
            runs_succeeded=sum(1 for o in self.outcomes if o.success),
            runs_failed=sum(1 for o in self.outcomes if not o.success),
            failed_checks=sorted({c for o in self.outcomes for c in o.failed_checks}),
            beyond_stop=self.positions_beyond_stop(db, sim),
            scripted=self.scripted,
            wall_seconds=time.perf_counter() - started,
            dagster_home=home,
            database_path=db_path,
            reaction=self.reaction(db),
            trigger_runs=sum(1 for o in self.outcomes if o.trigger),
            sensor_evaluations=self.sensor_evaluations,
        )

    def reaction(self, db: Database) -> str:
        """From the scripted gap to the recorded close, in simulated time, plus the closing run's wall time."""
        if self.gap_trade is None or self.gap_at is None:
            return ""
        trade = trades_repo.get_trade(db, self.gap_trade)
        if trade is None or trade.closed_at is None:
            return "NOT CLOSED"
        if trade.close_reason is ExitReason.BROKER_STOP:
            recorder = next((o for o in self.outcomes if o.number and o.at >= self.gap_at), None)
            seen = (
                f"; recorded by the next run {(recorder.at - self.gap_at).total_seconds():.0f} s later"
                if recorder
                else ""
            )
            return f"0 s: the broker's own protective stop filled at the gap{seen} (reason broker_stop)"
        closer = next((o for o in self.outcomes if o.at >= trade.closed_at and int(o.metadata.get("closed", 0))), None)
        how = "stop-trigger sensor" if closer and closer.trigger else "2-minute schedule"
        run = f" + {closer.seconds:.1f} s run" if closer else ""
        waited = (trade.closed_at - self.gap_at).total_seconds()
        return f"{waited:.0f} s simulated detection{run}, via the {how} (the schedule alone: up to 120 s)"

    def positions_beyond_stop(self, db: Database, sim: SimBroker) -> list[str]:
        """At the end, with fresh quotes straight from the broker: is any open position beyond its stop?"""
        trades = trades_repo.open_trades(db)
        if not trades:
            return []
        broker = AlpacaBroker(api_key="sim-key", secret_key="sim-secret", trading_url=sim.url, data_url=sim.url)
        quotes = broker.latest_quotes({t.symbol for t in trades}).quotes
        beyond, unjudged = beyond_stop(trades, quotes)
        return [f"{k}: {v}" for k, v in beyond.items()] + [f"{k}: cannot tell ({v})" for k, v in unjudged.items()]
