"""Calibration of the BUY:SELL check: no false failure on healthy simulated weeks, the seed's failure caught fast.

    python -m bench.calibration                      # 5 seeds × the week of 2026-11-16 (5 sessions), both rules
    python -m bench.calibration --seeds 7 11 --days 2 --json

What runs: per seed, the sim broker in this process on a frozen clock moved 2 simulated minutes per run, a
fresh SQLite trading DB, and the product's own steps in the stop-loss job's order — at each open the trading
day (universe sample → quotes → strategy entries, bracket orders as in the demo), then every 2 minutes until
the close the positions step (broker closes, protection, pending entries) and the sweep. Positions carry
over the nights; the DB and the market are one continuous week.

After every run both rules judge the day so far, from the same trading-DB numbers the assets read:
- `outcome` — the product's `checks.closes.buy_sell_ratio`: with positions open, no successful stop-loss
  run for 6 minutes since the later of the first buy and the last success;
- `fixed 5:1` — the rule it replaced (the baseline): after the first hour, BUY:SELL above 5:1, or N:0 with
  positions open.

The seed's failure, per seed: the same first session, but every stop-loss run fails (none succeeds) while
entries go on every 2 minutes with a limit of 100 positions (the seed app's 100 buys, 0 sells). It is
judged where the product judges it when no stop-loss run succeeds — the `health` asset, every 5 minutes —
and the report gives the simulated minutes from the open (the failure's onset) to the first failed verdict.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from trading_pipeline.checks.closes import buy_sell_ratio
from trading_pipeline.domain.calendar import session_bounds
from trading_pipeline.domain.types import OrderSide
from trading_pipeline.resources.strategy import StrategyConfig
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.steps.entries import open_entries
from trading_pipeline.steps.protection import protect_positions
from trading_pipeline.steps.quotes import fetch_quotes
from trading_pipeline.steps.reconcile import reconcile_positions
from trading_pipeline.steps.universe import build_universe
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline.store.migrate import upgrade

WEEK = [date(2026, 11, 16) + timedelta(days=d) for d in range(5)]  # Mon–Fri, no holiday, no half day
SEEDS = [7, 11, 23, 42, 99]
RUN_EVERY = timedelta(minutes=2)
HEALTH_EVERY = timedelta(minutes=5)
TARGET_DETECTION = timedelta(minutes=15)


def fixed_ratio_rule(buys: int, sells: int, open_positions: int, elapsed: timedelta) -> bool:
    """The baseline: the check before calibration (passed = True)."""
    if elapsed < timedelta(hours=1):
        return True
    if sells == 0:
        return buys == 0 or open_positions == 0
    return buys / sells <= 5.0


@dataclass
class Verdicts:
    evaluations: int = 0
    outcome_failures: int = 0
    fixed_failures: int = 0
    outcome_failed_days: set[str] = field(default_factory=set)
    fixed_failed_days: set[str] = field(default_factory=set)
    first_outcome_text: str = ""
    first_fixed_text: str = ""


@dataclass
class SeedResult:
    seed: int
    sessions: int
    runs: int
    buys: int
    sells: int
    evaluations: int
    outcome_false_failures: int
    fixed_false_failures: int
    fixed_failed_days: list[str]
    seed_failure_buys: int
    outcome_detected_after_min: float | None
    fixed_detected_after_min: float | None
    example_fixed_false_failure: str


class Week:
    """The product's steps against one sim market and one trading DB."""

    def __init__(self, db: Database, sim: object, broker: object, *, max_positions: int) -> None:
        self.db, self.sim, self.broker = db, sim, broker
        self.config = StrategyConfig(
            max_open_positions=max_positions,
            max_notional_per_position=4000.0,
            max_total_notional=max_positions * 4000.0,
            protective_orders=True,
        )
        self.runs = 0
        self.last_success: datetime | None = None

    @property
    def now(self) -> datetime:
        return self.sim.market.now  # type: ignore[attr-defined]

    def trading_day(self, day: date, opened: datetime, sample_size: int = 150) -> None:
        build_universe(self.db, self.broker, trading_date=day, sample_size=sample_size)  # type: ignore[arg-type]
        fetch_quotes(self.db, self.broker, trading_date=day, run_id=None, now=self.now)  # type: ignore[arg-type]
        self.entries(day, opened)

    def entries(self, day: date, opened: datetime) -> None:
        open_entries(
            self.db,
            self.broker,  # type: ignore[arg-type]
            strategy=self.config.load().strategy,
            limits=self.config.limits(),
            trading_date=day,
            run_id=None,
            now=self.now,
            protective_orders=True,
            day_start=opened,
        )

    def stop_loss_run(self) -> None:
        self.runs += 1
        protection = protect_positions(self.db, self.broker, now=self.now)  # type: ignore[arg-type]
        reconcile_positions(self.db, self.broker, now=self.now, broker_positions=protection.broker_positions)  # type: ignore[arg-type]
        run_stop_loss_sweep(self.db, self.broker, run_id=f"calibration-{self.runs}", now=self.now)  # type: ignore[arg-type]
        self.last_success = self.now

    def judge(self, opened: datetime, closed: datetime, verdicts: Verdicts, day: date) -> None:
        sides = orders_repo.count_orders_by_side(self.db, since=opened)
        open_positions = len(trades_repo.open_trades(self.db))
        buys, sells = sides[OrderSide.BUY], sides[OrderSide.SELL]
        outcome = buy_sell_ratio(
            buys,
            sells,
            open_positions=open_positions,
            now=self.now,
            in_session=opened <= self.now <= closed,
            first_buy_at=orders_repo.first_order_at(self.db, OrderSide.BUY, since=opened),
            last_protected_at=self.last_success,
        )
        fixed = fixed_ratio_rule(buys, sells, open_positions, min(self.now, closed) - opened)
        verdicts.evaluations += 1
        if not outcome.passed:
            verdicts.outcome_failures += 1
            verdicts.outcome_failed_days.add(day.isoformat())
            verdicts.first_outcome_text = verdicts.first_outcome_text or f"{day}: {outcome.description}"
        if not fixed:
            verdicts.fixed_failures += 1
            verdicts.fixed_failed_days.add(day.isoformat())
            verdicts.first_fixed_text = verdicts.first_fixed_text or (
                f"{day} {self.now:%H:%M} UTC: {buys}:{sells} with {open_positions} open, stop-loss runs succeeding"
            )


def _sim_and_broker(seed: int, start: datetime, n_symbols: int):  # type: ignore[no-untyped-def]
    from trading_pipeline.broker.alpaca import AlpacaBroker
    from trading_pipeline.sim.server import SimBroker

    sim = SimBroker(seed=seed, n_symbols=n_symbols, start=start, realtime=False)
    sim.start()
    broker = AlpacaBroker("calibration-key", "calibration-secret", trading_url=sim.url, data_url=sim.url, timeout=5)
    return sim, broker


def healthy_week(
    seed: int, days: list[date], folder: Path, n_symbols: int, minutes: int | None
) -> tuple[Week, Verdicts]:
    verdicts = Verdicts()
    first_open = session_bounds(days[0])[0].astimezone(UTC)  # type: ignore[index]
    sim, broker = _sim_and_broker(seed, first_open - timedelta(minutes=1), n_symbols)
    try:
        with Database(f"sqlite:///{folder / f'healthy-{seed}.db'}") as db:
            upgrade(db)
            week = Week(db, sim, broker, max_positions=20)
            for day in days:
                opened, closed = (t.astimezone(UTC) for t in session_bounds(day))  # type: ignore[union-attr]
                end = min(closed, opened + timedelta(minutes=minutes)) if minutes else closed
                sim.market.advance_to(opened)
                week.trading_day(day, opened)
                while sim.market.now + RUN_EVERY <= end:
                    sim.market.advance(RUN_EVERY)
                    week.stop_loss_run()
                    week.judge(opened, closed, verdicts, day)
            return week, verdicts
    finally:
        broker.close()
        sim.stop()


def seed_failure(seed: int, day: date, folder: Path, n_symbols: int) -> tuple[int, float | None, float | None]:
    """Every stop-loss run fails while entries go on: (buys, outcome detection min, fixed-rule detection min)."""
    opened, closed = (t.astimezone(UTC) for t in session_bounds(day))  # type: ignore[union-attr]
    sim, broker = _sim_and_broker(seed, opened - timedelta(minutes=1), n_symbols)
    detected: dict[str, float | None] = {"outcome": None, "fixed": None}
    try:
        with Database(f"sqlite:///{folder / f'seed-failure-{seed}.db'}") as db:
            upgrade(db)
            week = Week(db, sim, broker, max_positions=100)
            sim.market.advance_to(opened)
            week.trading_day(day, opened, sample_size=600)
            verdicts = Verdicts()
            next_health = opened + HEALTH_EVERY
            while sim.market.now < opened + timedelta(hours=2) and None in detected.values():
                sim.market.advance(RUN_EVERY)
                week.entries(day, opened)  # the stop-loss run fails; entries go on
                if sim.market.now >= next_health:
                    next_health += HEALTH_EVERY
                    before = (verdicts.outcome_failures, verdicts.fixed_failures)
                    week.judge(opened, closed, verdicts, day)
                    minutes = (sim.market.now - opened).total_seconds() / 60
                    if detected["outcome"] is None and verdicts.outcome_failures > before[0]:
                        detected["outcome"] = minutes
                    if detected["fixed"] is None and verdicts.fixed_failures > before[1]:
                        detected["fixed"] = minutes
            buys = orders_repo.count_orders_by_side(db, since=opened)[OrderSide.BUY]
            return buys, detected["outcome"], detected["fixed"]
    finally:
        broker.close()
        sim.stop()


def calibrate(
    seeds: list[int],
    days: list[date],
    *,
    n_symbols: int = 800,
    minutes: int | None = None,
    progress: Callable[[str], None] = lambda text: None,
) -> list[SeedResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="tp-calibration-") as name:
        folder = Path(name)
        for seed in seeds:
            week, verdicts = healthy_week(seed, days, folder, n_symbols, minutes)
            with Database(f"sqlite:///{folder / f'healthy-{seed}.db'}") as db:
                sides = orders_repo.count_orders_by_side(db)
            buys, outcome_min, fixed_min = seed_failure(seed, days[0], folder, n_symbols)
            results.append(
                SeedResult(
                    seed=seed,
                    sessions=len(days),
                    runs=week.runs,
                    buys=sides[OrderSide.BUY],
                    sells=sides[OrderSide.SELL],
                    evaluations=verdicts.evaluations,
                    outcome_false_failures=verdicts.outcome_failures,
                    fixed_false_failures=verdicts.fixed_failures,
                    fixed_failed_days=sorted(verdicts.fixed_failed_days),
                    seed_failure_buys=buys,
                    outcome_detected_after_min=outcome_min,
                    fixed_detected_after_min=fixed_min,
                    example_fixed_false_failure=verdicts.first_fixed_text,
                )
            )
            progress(f"calibration: seed {seed} done ({week.runs} runs)")
    return results


def _minutes(value: float | None) -> str:
    return "not within 2 h" if value is None else f"{value:.0f} min"


def render(results: list[SeedResult], days: list[date]) -> str:
    lines = [
        f"## BUY:SELL calibration — {len(results)} seeds × {len(days)} sessions ({days[0]} … {days[-1]})",
        "",
        "| seed | runs | BUY:SELL (week) | verdicts | false failures: outcome rule | false failures: fixed 5:1 "
        "| seed failure: buys | caught by outcome rule | caught by fixed 5:1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        fixed_days = f" ({len(r.fixed_failed_days)} of {r.sessions} days)" if r.fixed_false_failures else ""
        lines.append(
            f"| {r.seed} | {r.runs} | {r.buys}:{r.sells} | {r.evaluations} | {r.outcome_false_failures} | "
            f"{r.fixed_false_failures}{fixed_days} | {r.seed_failure_buys} | "
            f"{_minutes(r.outcome_detected_after_min)} | {_minutes(r.fixed_detected_after_min)} |"
        )
    total_outcome = sum(r.outcome_false_failures for r in results)
    total_fixed = sum(r.fixed_false_failures for r in results)
    caught = [r.outcome_detected_after_min for r in results]
    within = all(m is not None and m <= TARGET_DETECTION.total_seconds() / 60 for m in caught)
    lines += [
        "",
        f"outcome rule: {total_outcome} false failures in {sum(r.evaluations for r in results)} healthy verdicts; "
        f"seed failure caught within {TARGET_DETECTION.total_seconds() / 60:.0f} min on every seed: "
        f"{'yes' if within else 'NO'} (slowest {_minutes(max((m for m in caught if m is not None), default=None))})",
        f"fixed 5:1 baseline: {total_fixed} false failures",
    ]
    examples = [r.example_fixed_false_failure for r in results if r.example_fixed_false_failure]
    if examples:
        lines.append(f"e.g. {examples[0]}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS, help="market seeds (default 5)")
    parser.add_argument("--days", type=int, default=len(WEEK), help="sessions of the week of 2026-11-16 (max 5)")
    parser.add_argument("--minutes", type=int, help="only the first N minutes of each session (a quick look)")
    parser.add_argument("--symbols", type=int, default=800, help="sim universe size (default 800)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> list[SeedResult]:
    args = build_parser().parse_args(argv)
    days = WEEK[: max(1, min(args.days, len(WEEK)))]
    random.seed(0)
    results = calibrate(
        args.seeds, days, n_symbols=args.symbols, minutes=args.minutes, progress=lambda t: print(t, file=sys.stderr)
    )
    print(json.dumps([asdict(r) for r in results], indent=2) if args.json else render(results, days), file=out)
    return results


if __name__ == "__main__":
    main()
