"""A whole trading day through the real stop-loss job: does run R cost what run 1 did?

    python -m bench.day --positions 2000 --runs 30                    # SQLite, ≈ 2 min
    python -m bench.day --positions 10000 --runs 195 --backend postgres --json

Seeds `--positions` open long trades over positions / 5 symbols (1 in 100 beyond its stop at the open, so the
first run closes them), then executes `stop_loss_job` (quotes → positions → closes and its checks) in process
`--runs` times on one Dagster instance, the sim's market advanced 2 minutes between runs from the session's
open (09:31 ET), with `--latency-ms` added to every sim request. For run 1 and run R it prints:

- `check_s`: the outcome checks' own time inside the `closes` step (its `check_seconds` metadata: the
  beyond-stop and outcome checks, the day's aggregates folded in, and the DB health check);
- `longest_txn_ms`: the run's longest DB transaction (`DatabaseMonitor`, the closes step's metadata);
- `broker_requests`: every request the sim received during the run; `floor_requests`: 1 clock, 1 positions,
  1 open-orders listing, ⌈symbols / quote chunk limit⌉ quotes, 1 per close order and, when there was one,
  1 listing to look up fills; `session_requests`: of `broker_requests`, the corporate-actions read the
  session's first run makes when no pre-flight has (issue 18: ⌈symbols / 100⌉), shown apart from the floor;
- `wall_s`: launch → end of `execute_in_process`;
- `last_close_s`: from the exits decided to the broker's answer to the run's last close order (the closes
  step's `last_close_submitted_s`; 0 when the run closed nothing);
- `rate_limited`: the 429s the sim answered during the run. The sim enforces Alpaca's documented limit,
  `--rate-limit` requests per minute per key on each API (default 200; 0: not enforced), in wall time, and
  sends the `X-RateLimit-*` headers the product's limiter paces by: the goal is 0 in every run.

Goals (issue 16): each figure of run R ≤ 1.2 × run 1, longest transaction < 50 ms, requests ≤ floor + 10 %.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.sweep import REPO_ROOT, SEED, Backend, seed_positions
from trading_pipeline.broker.alpaca import QUOTE_CHUNK_SIZE
from trading_pipeline.sim.rate_limit import RateLimitConfig
from trading_pipeline.sim.server import SimBroker

OPEN = datetime(2026, 11, 24, 14, 31, tzinfo=UTC)  # a Tuesday, one minute after the open
RUN_EVERY = timedelta(minutes=2)
CORPORATE_ACTIONS_ROUTE = "GET /v1/corporate-actions"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclass
class RunFigures:
    check_s: float
    longest_txn_ms: float
    broker_requests: int
    floor_requests: int
    session_requests: int
    wall_s: float
    closed: int
    unique_symbols: int
    last_close_s: float = 0.0
    rate_limited: int = 0
    longest_txn_statement: str = ""


def floor_requests(unique_symbols: int, close_orders: int, chunk: int = QUOTE_CHUNK_SIZE) -> int:
    """The fewest requests a stop-loss run can make (issue 16)."""
    return 3 + math.ceil(unique_symbols / chunk) + close_orders + (1 if close_orders else 0)


def closes_metadata(result: Any) -> dict[str, Any]:
    for materialization in result.asset_materializations_for_node("closes"):
        return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    raise SystemExit(f"stop_loss_job did not materialize closes: run {result.run_id}")


@contextmanager
def dagster_env(sim: SimBroker, url: str) -> Iterator[Path]:
    """The product's own settings from the environment (as `dagster dev` would see them), and a
    project-local Dagster home, both undone at the end."""
    saved = dict(os.environ)
    home = Path(tempfile.mkdtemp(prefix="bench_day_home_"))
    try:
        os.environ.update(sim.env())
        os.environ["DATABASE_URL"] = url
        shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
        yield home
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(home, ignore_errors=True)


def run_day(
    backend: Backend,
    positions: int,
    runs: int,
    *,
    latency_ms: int,
    rate_limit: int = 200,
    say: Any = None,
) -> list[RunFigures]:
    import dagster as dg

    from trading_pipeline.definitions import build_definitions, build_resources
    from trading_pipeline.domain.names import STOP_LOSS_JOB
    from trading_pipeline.settings import Settings
    from trading_pipeline.store.database import Database

    symbols = max(1, positions // 5)
    url = backend.fresh()
    universe = max(300, int(symbols * 1.15) + 50)
    figures: list[RunFigures] = []
    quota = RateLimitConfig(trading=rate_limit, data=rate_limit) if rate_limit else None
    with SimBroker(seed=SEED, n_symbols=universe, start=OPEN, realtime=False, rate_limit=quota) as sim:
        with Database(url) as db:
            seed_positions(db, sim, positions, symbols, exit_every=100)
        sim.faults.configure(latency_ms=latency_ms)
        with dagster_env(sim, url) as home, dg.DagsterInstance.from_config(str(home)) as instance:
            job = build_definitions(build_resources(Settings.from_env())).resolve_job_def(STOP_LOSS_JOB)
            for index in range(runs):
                if index:
                    sim.market.advance(RUN_EVERY)
                sim.reset_counters()
                limited_before = sim.rate_limit.counters()["limited_total"]
                started = time.perf_counter()
                result = job.execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False)
                wall = time.perf_counter() - started
                if not result.success:
                    raise SystemExit(f"stop_loss_job failed in run {index + 1}: {result.run_id}")
                meta = closes_metadata(result)
                counted = sim.counters()["requests"]
                requests = sum(counted.values())
                run = RunFigures(
                    check_s=float(meta["check_seconds"]),
                    longest_txn_ms=float(meta["db_longest_transaction_ms"]),
                    broker_requests=requests,
                    floor_requests=floor_requests(int(meta["unique_symbols"]), int(meta["orders_submitted"])),
                    session_requests=counted.get(CORPORATE_ACTIONS_ROUTE, 0),
                    wall_s=wall,
                    closed=int(meta["closed"]),
                    unique_symbols=int(meta["unique_symbols"]),
                    longest_txn_statement=str(meta.get("db_longest_transaction_first_statement", "")),
                    last_close_s=float(meta.get("last_close_submitted_s") or 0.0),
                    rate_limited=sim.rate_limit.counters()["limited_total"] - limited_before,
                )
                figures.append(run)
                if say is not None:
                    answered = f" (last close order answered {run.last_close_s:.2f} s after the exits)"
                    last = answered if run.closed else ""
                    say(
                        f"run {index + 1:>3}: check {run.check_s:.3f} s, longest tx {run.longest_txn_ms:.1f} ms, "
                        f"requests {run.broker_requests} (floor {run.floor_requests}"
                        f"{f' + {run.session_requests} once a session' if run.session_requests else ''}), "
                        f"wall {run.wall_s:.2f} s, "
                        f"closed {run.closed}, 429s {run.rate_limited}"
                        f"{last}"
                        f"; longest tx began with: {run.longest_txn_statement[:60]}"
                    )
    return figures


FIELDS = (
    "check_s",
    "longest_txn_ms",
    "broker_requests",
    "floor_requests",
    "session_requests",
    "wall_s",
    "last_close_s",
    "rate_limited",
)


def summary(figures: list[RunFigures]) -> dict[str, dict[str, float]]:
    first, last = asdict(figures[0]), asdict(figures[-1])
    return {"first": {k: first[k] for k in FIELDS}, "last": {k: last[k] for k in FIELDS}}


def medians(figures: list[RunFigures], window: int = 10) -> str:
    """Medians of the first runs after run 1 (which makes the day's closes) and of the last runs: one run's
    figures can carry a pause of the process (a full garbage collection, a WAL checkpoint), a median does not."""
    if len(figures) < 2 * window + 1:
        return ""
    early, late = figures[1 : window + 1], figures[-window:]
    lines = [f"{'median of':<16}{f'runs 2-{window + 1}':>12}{f'last {window}':>12}{'ratio':>9}"]
    for name in ("check_s", "longest_txn_ms", "wall_s"):
        a, b = statistics.median(getattr(r, name) for r in early), statistics.median(getattr(r, name) for r in late)
        lines.append(f"{name:<16}{a:>12.3f}{b:>12.3f}{b / a if a else float('nan'):>9.2f}")
    over = sum(1 for r in figures if r.longest_txn_ms >= 50)
    slowest = max(figures, key=lambda r: r.check_s)
    lines.append(f"runs with a transaction >= 50 ms: {over} of {len(figures)}; slowest check {slowest.check_s:.3f} s")
    lines.append(f"429s answered by the sim over the day: {sum(r.rate_limited for r in figures)}")
    return "\n".join(lines)


def render(result: dict[str, dict[str, float]], runs: int) -> str:
    first, last = result["first"], result["last"]
    lines = [f"{'figure':<16}{'run 1':>12}{f'run {runs}':>12}{'ratio':>9}"]
    for name in FIELDS:
        ratio = last[name] / first[name] if first[name] else float("nan")
        lines.append(f"{name:<16}{first[name]:>12.3f}{last[name]:>12.3f}{ratio:>9.2f}")
    for label, run in (("run 1", first), (f"run {runs}", last)):
        over = run["broker_requests"] / run["floor_requests"] - 1
        session = run["session_requests"]
        beyond = (run["broker_requests"] - session) / run["floor_requests"] - 1
        extra = f" ({beyond:+.0%} without the {session:.0f} once-a-session requests)" if session else ""
        lines.append(f"{label}: requests {over:+.0%} over the floor{extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.day", description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_DATABASE_URL", POSTGRES_URL))
    parser.add_argument("--latency-ms", type=int, default=20, help="added latency per sim request (default 20)")
    parser.add_argument(
        "--rate-limit", type=int, default=200, help="requests per minute per key the sim enforces (0: none)"
    )
    parser.add_argument("--json", action="store_true", help='print one object: {"first": {...}, "last": {...}}')
    args = parser.parse_args(argv)
    if args.runs < 1 or args.positions < 5 or args.rate_limit < 0:
        parser.error("--runs must be ≥ 1, --positions ≥ 5 and --rate-limit ≥ 0")
    workdir = Path(tempfile.mkdtemp(prefix="bench_day_"))
    name = "postgresql" if args.backend == "postgres" else "sqlite"
    backend = Backend(name, workdir, args.postgres_url if name == "postgresql" else None)
    say = None if args.json else (lambda text: print(text, flush=True))
    try:
        figures = run_day(
            backend, args.positions, args.runs, latency_ms=args.latency_ms, rate_limit=args.rate_limit, say=say
        )
    finally:
        backend.close()
        shutil.rmtree(workdir, ignore_errors=True)
    result = summary(figures)
    if args.json:
        json.dump(result, sys.stdout)
        print()
    else:
        limit = f"{args.rate_limit} requests/min enforced" if args.rate_limit else "no rate limit"
        print(f"\n{args.positions} positions, {args.runs} runs, {args.backend}, {args.latency_ms} ms latency, {limit}")
        print(render(result, args.runs))
        print(medians(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
