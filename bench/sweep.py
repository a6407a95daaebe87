"""Benchmark: one stop-loss sweep against the sim broker, ours vs the seed's naive shape, measured in one run.

    python -m bench.sweep                       # 100/50, 1,000/500, 10,000/2,000 on SQLite (+ Postgres if set)
    python -m bench.sweep --postgres-url postgresql://postgres@127.0.0.1:5432/test
    python -m bench.sweep --sizes 20:10 --latency-ms 0 --no-dagster     # the smoke test's size

Per case (open positions : unique symbols) and backend it seeds the trading DB with bulk inserts and the sim
broker's positions directly (no HTTP orders), sets a fixed per-request latency with the sim's fault
injection, then measures

- **ours**: `trading_pipeline.steps.closes.run_stop_loss_sweep` (read + commit, multi-symbol chunked
  quotes, one short transaction per close step);
- **naive**: the seed's shape, implemented here: one transaction held open across a loop that asks the
  broker for each position's own quote and closes it when its stop is crossed, committed at the end.

Both run on a fresh DB and a fresh sim with the same seed, through the same `AlpacaBroker` wrapped in
the DB monitor's guard, so "connections checked out during broker calls" is counted the same way. A
fraction of the positions (`--exit-fraction`, default 1%) are seeded beyond their stop, so both submit
the same close orders. The naive sweep is slow by design: above `--baseline-sample` positions it runs on
the first N positions (which hold the same share of exits) and its counts, times and longest transaction
are extrapolated linearly — marked `~` in the table.

Finally it measures one Dagster stop-loss run end to end (`stop_loss_job` via `build_definitions`,
`execute_in_process` on a project-local instance) against the bare sweep at the same size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from trading_pipeline.broker.alpaca import QUOTE_CHUNK_SIZE, AlpacaBroker
from trading_pipeline.broker.base import OrderRequest
from trading_pipeline.broker.guarded import GuardedBroker
from trading_pipeline.domain.exits import InvalidQuote, PositionView, decide_exit
from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.types import OrderAction, OrderSide, PositionSide, TradeStatus
from trading_pipeline.sim.account import SimPosition
from trading_pipeline.sim.server import DUMMY_API_KEY, DUMMY_SECRET_KEY, SimBroker
from trading_pipeline.steps.closes import CLOSE_CONCURRENCY, run_stop_loss_sweep
from trading_pipeline.store.database import Database, redact
from trading_pipeline.store.migrate import upgrade
from trading_pipeline.store.models import Base, Trade

# Tuesday 24 November 2026, 11:00 New York: a regular session.
SESSION = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
SEED = 7
DEFAULT_SIZES = ((100, 50), (1_000, 500), (10_000, 2_000))
QUOTE_ROUTE = "GET /v2/stocks/quotes/latest"
ORDER_ROUTE = "POST /v2/orders"
REPO_ROOT = Path(__file__).resolve().parents[1]

# ---- measurements -----------------------------------------------------------------------------------------


@dataclass
class Measurement:
    variant: str
    backend: str
    positions: int
    symbols: int
    measured_positions: int
    quote_requests: float
    orders_submitted: float
    longest_transaction_ms: float
    checkouts_during_broker_calls: float
    peak_checkouts: int
    transactions: int
    wall_seconds: float
    peak_rss_mb: float
    closed: int = 0
    notes: str = ""
    closes_seconds: float | None = None  # exits decided → the last close order answered

    @property
    def extrapolated(self) -> bool:
        return self.measured_positions < self.positions


@dataclass
class CaseResult:
    backend: str
    positions: int
    symbols: int
    measurements: list[Measurement] = field(default_factory=list)

    def get(self, variant: str) -> Measurement | None:
        return next((m for m in self.measurements if m.variant == variant), None)


@contextmanager
def peak_rss() -> Iterator[Callable[[], float]]:
    """Peak resident memory (MB) of this process while the block runs (Linux: VmHWM after resetting it)."""
    reset = False
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS counter (Linux ≥ 4.0)
        reset = True
    except OSError:
        pass
    value: list[float] = [0.0]
    try:
        yield lambda: value[0]
    finally:
        if reset:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    value[0] = int(line.split()[1]) / 1024
        else:  # lifetime peak: an upper bound
            value[0] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- seeding ----------------------------------------------------------------------------------------------


def bench_symbols(sim: SimBroker, n: int) -> list[str]:
    chosen = [a.symbol for a in sim.market.assets if a.status == "active" and a.tradable and a.symbol != "SPY"]
    if len(chosen) < n:
        raise SystemExit(f"the sim universe has only {len(chosen)} tradable symbols, {n} wanted")
    return chosen[:n]


def seed_positions(db: Database, sim: SimBroker, positions: int, symbols: int, exit_every: int) -> int:
    """`positions` open long trades over `symbols` symbols (round robin), 1 share each, bulk-inserted; the
    sim account holds the matching positions. Every `exit_every`-th trade is beyond its stop. Returns how
    many are beyond their stop."""
    names = bench_symbols(sim, symbols)
    quotes = sim.market.quotes(names)
    opened = sim.market.now
    rows: list[dict[str, Any]] = []
    held: dict[str, int] = {}
    beyond = 0
    for i in range(positions):
        symbol = names[i % symbols]
        bid = quotes[symbol].bid
        exits = exit_every > 0 and i % exit_every == 0
        if exits:  # bought 10% higher, stop 2% above today's bid: crossed
            entry, stop = (
                (bid * Decimal("1.10")).quantize(Decimal("0.01")),
                (bid * Decimal("1.02")).quantize(Decimal("0.01")),
            )
            beyond += 1
        else:
            entry, stop = bid, (bid * Decimal("0.90")).quantize(Decimal("0.01"))
        rows.append(
            {
                "id": uuid.uuid4(),
                "symbol": symbol,
                "side": PositionSide.LONG,
                "qty": Decimal(1),
                "entry_price": entry,
                "entry_at": opened,
                "stop_loss": stop,
                "take_profit": (entry * Decimal("1.5")).quantize(Decimal("0.01")),
                "status": TradeStatus.OPEN,
                "close_attempts": 0,
                "strategy": "bench",
                "open_client_order_id": f"bench-{i:07d}",  # sorts in seeding order
            }
        )
        held[symbol] = held.get(symbol, 0) + 1
    with db.transaction() as session:
        for start in range(0, len(rows), 2_000):
            session.execute(sa.insert(Trade), rows[start : start + 2_000])
    with sim.market.lock:
        book = sim.market.book
        for symbol, qty in held.items():
            asset = sim.market.asset(symbol)
            assert asset is not None
            book.positions[symbol] = SimPosition(symbol, asset.id, asset.exchange, Decimal(qty), quotes[symbol].ask)
    return beyond


# ---- the naive baseline (the seed's shape) ------------------------------------------------------------


@dataclass
class NaiveResult:
    checked: int = 0
    quote_requests: int = 0
    orders_submitted: int = 0
    closed: int = 0


def naive_sweep(db: Database, broker: Any, *, now: datetime, limit: int | None = None) -> NaiveResult:
    """One transaction held across a per-position quote loop; a crossed stop is closed inside it too."""
    result = NaiveResult()
    with db.transaction() as session:
        query = sa.select(Trade).where(Trade.status == TradeStatus.OPEN).order_by(Trade.open_client_order_id)
        trades = session.scalars(query.limit(limit) if limit else query).all()
        for trade in trades:
            result.checked += 1
            batch = broker.latest_quotes([trade.symbol])  # a broker call with the transaction open
            result.quote_requests += batch.requests
            quote = batch.quotes.get(trade.symbol)
            if quote is None:
                continue
            view = PositionView(
                symbol=trade.symbol,
                side=trade.side,
                qty=trade.qty,
                entry_price=trade.entry_price,
                opened_at=trade.entry_at,
                stop_loss=trade.stop_loss,
                take_profit=trade.take_profit,
            )
            try:
                decision = decide_exit(view, quote, now=now)
            except InvalidQuote:
                continue
            if decision is None:
                continue
            cid = client_order_id(trade.id, OrderAction.CLOSE, trade.close_attempts)
            order = broker.submit_order(OrderRequest(trade.symbol, OrderSide.SELL, trade.qty, cid))
            result.orders_submitted += 1
            trade.status = TradeStatus.CLOSED
            trade.close_reason = decision.reason
            trade.close_client_order_id = cid
            trade.close_price = order.filled_avg_price
            trade.closed_at = order.filled_at or now
            result.closed += 1
    return result


# ---- one case ---------------------------------------------------------------------------------------------


class Backend:
    """A fresh, migrated trading DB for each measurement: a new SQLite file, or truncated Postgres tables."""

    def __init__(self, name: str, workdir: Path, postgres_url: str | None = None) -> None:
        self.name = name
        self.workdir = workdir
        self._admin_url = postgres_url
        self._database: str | None = None
        self._counter = 0
        if name == "postgresql":
            assert postgres_url is not None
            base = make_url(postgres_url).set(drivername="postgresql+psycopg")
            self._database = f"tp_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            with self._admin() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self._database}"'))
            self.url = base.set(database=self._database).render_as_string(hide_password=False)
            with Database(self.url) as db:
                upgrade(db)

    @contextmanager
    def _admin(self) -> Iterator[sa.Connection]:
        base = make_url(self._admin_url or "").set(drivername="postgresql+psycopg")
        engine = sa.create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def fresh(self) -> str:
        if self.name == "sqlite":
            self._counter += 1
            url = f"sqlite:///{self.workdir / f'bench_{self._counter}.db'}"
            with Database(url) as db:
                upgrade(db)
            return url
        with Database(self.url) as db, db.engine.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return self.url

    def close(self) -> None:
        if self._database is not None:
            with self._admin() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self._database}" WITH (FORCE)'))
            self._database = None


def make_broker(sim: SimBroker) -> AlpacaBroker:
    return AlpacaBroker(DUMMY_API_KEY, DUMMY_SECRET_KEY, trading_url=sim.url, data_url=sim.url, timeout=30.0)


@contextmanager
def seeded(backend: Backend, positions: int, symbols: int, exit_every: int, latency_ms: int) -> Iterator[Any]:
    """A fresh DB and a fresh sim (same seed → same market) holding the case's positions."""
    url = backend.fresh()
    universe = max(300, int(symbols * 1.15) + 50)
    with SimBroker(seed=SEED, n_symbols=universe, start=SESSION, realtime=False) as sim, Database(url) as db:
        beyond = seed_positions(db, sim, positions, symbols, exit_every)
        sim.faults.configure(latency_ms=latency_ms)
        sim.reset_counters()
        db.monitor.reset()
        yield db, sim, beyond


def measure_ours(
    backend: Backend, positions: int, symbols: int, *, exit_every: int, latency_ms: int, sequential: bool = False
) -> Measurement:
    """`sequential`: closes one symbol after another (`close_concurrency=1`), the baseline of the concurrent
    closes, measured in the same run."""
    variant = "ours-seq" if sequential else "ours"
    with seeded(backend, positions, symbols, exit_every, latency_ms) as (db, sim, beyond):
        broker = make_broker(sim)
        guarded = GuardedBroker(broker, db.monitor.broker_call)
        with peak_rss() as rss:
            started = time.perf_counter()
            result = run_stop_loss_sweep(
                db,
                guarded,  # type: ignore[arg-type]
                run_id=f"bench-{variant}",
                now=sim.market.now,
                close_concurrency=1 if sequential else CLOSE_CONCURRENCY,
            )
            wall = time.perf_counter() - started
        broker.close()
        stats = db.monitor.stats()
        if result.positions_checked != positions:
            raise SystemExit(f"{variant}: judged {result.positions_checked} of {positions} open positions")
        if result.closed != beyond:
            raise SystemExit(f"{variant}: closed {result.closed} of {beyond} positions beyond their stop")
        return Measurement(
            variant=variant,
            backend=backend.name,
            positions=positions,
            symbols=symbols,
            measured_positions=positions,
            quote_requests=sim.requests(QUOTE_ROUTE),
            orders_submitted=sim.requests(ORDER_ROUTE),
            longest_transaction_ms=stats.longest_transaction_ms,
            checkouts_during_broker_calls=stats.checkouts_during_broker_calls,
            peak_checkouts=stats.peak_checked_out,
            transactions=stats.transactions,
            wall_seconds=wall,
            peak_rss_mb=rss(),
            closed=result.closed,
            closes_seconds=result.last_close_submitted_s,
        )


def measure_naive(
    backend: Backend, positions: int, symbols: int, *, exit_every: int, latency_ms: int, sample: int
) -> Measurement:
    measured = min(positions, sample)
    with seeded(backend, positions, symbols, exit_every, latency_ms) as (db, sim, _beyond):
        broker = make_broker(sim)
        guarded = GuardedBroker(broker, db.monitor.broker_call)
        with peak_rss() as rss:
            started = time.perf_counter()
            result = naive_sweep(db, guarded, now=sim.market.now, limit=measured if measured < positions else None)
            wall = time.perf_counter() - started
        broker.close()
        stats = db.monitor.stats()
        scale = positions / measured
        return Measurement(
            variant="naive",
            backend=backend.name,
            positions=positions,
            symbols=symbols,
            measured_positions=measured,
            quote_requests=sim.requests(QUOTE_ROUTE) * scale,
            orders_submitted=sim.requests(ORDER_ROUTE) * scale,
            # One transaction spans the whole loop, so it grows with the positions like the wall time.
            longest_transaction_ms=stats.longest_transaction_ms * scale,
            checkouts_during_broker_calls=stats.checkouts_during_broker_calls * scale,
            peak_checkouts=stats.peak_checked_out,
            transactions=stats.transactions,
            wall_seconds=wall * scale,
            peak_rss_mb=rss(),
            closed=result.closed,
            notes="" if scale == 1 else f"measured on {measured} of {positions} positions, ×{scale:g} linear",
        )


# ---- Dagster end to end -----------------------------------------------------------------------------------


@dataclass
class DagsterOverhead:
    backend: str
    positions: int
    symbols: int
    repetitions: int
    bare_sweep_median_s: float
    dagster_run_median_s: float
    dagster_run_max_s: float
    closes_step_median_s: float
    first_run_s: float

    @property
    def overhead_s(self) -> float:
        return self.dagster_run_median_s - self.bare_sweep_median_s


def measure_dagster(
    backend: Backend, positions: int, symbols: int, *, latency_ms: int, repetitions: int
) -> DagsterOverhead:
    """Launch → success of `stop_loss_job` (quotes → positions → closes + checks) on a project-local instance,
    vs the bare sweep on the same seeded state. No position is beyond its stop, so every run does the same."""
    import dagster as dg

    from trading_pipeline.definitions import build_definitions, build_resources
    from trading_pipeline.domain.names import STOP_LOSS_JOB
    from trading_pipeline.settings import Settings

    with seeded(backend, positions, symbols, 0, latency_ms) as (db, sim, _beyond):
        broker = make_broker(sim)
        bare = []
        for _ in range(repetitions):
            started = time.perf_counter()
            run_stop_loss_sweep(db, GuardedBroker(broker, db.monitor.broker_call), run_id=None, now=sim.market.now)  # type: ignore[arg-type]
            bare.append(time.perf_counter() - started)
        broker.close()

        saved = dict(os.environ)
        home = Path(tempfile.mkdtemp(prefix="bench_dagster_home_"))
        try:
            os.environ.update(sim.env())
            os.environ["DATABASE_URL"] = str(db.url.render_as_string(hide_password=False))
            shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
            defs = build_definitions(build_resources(Settings.from_env()))
            job = defs.resolve_job_def(STOP_LOSS_JOB)
            quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
            runs, closes_steps = [], []
            with dg.DagsterInstance.from_config(str(home)) as instance:
                for _ in range(repetitions + 1):  # the first run also pays one-off imports and caches
                    started = time.perf_counter()
                    result = job.execute_in_process(instance=instance, run_config=quiet, raise_on_error=False)
                    runs.append(time.perf_counter() - started)
                    if not result.success:
                        raise SystemExit(f"stop_loss_job failed in the bench: {result.run_id}")
                    closes_steps.append(_step_seconds(instance, result.run_id, "closes"))
        finally:
            os.environ.clear()
            os.environ.update(saved)
            shutil.rmtree(home, ignore_errors=True)
    warm = runs[1:]
    return DagsterOverhead(
        backend=backend.name,
        positions=positions,
        symbols=symbols,
        repetitions=repetitions,
        bare_sweep_median_s=statistics.median(bare),
        dagster_run_median_s=statistics.median(warm),
        dagster_run_max_s=max(warm),
        closes_step_median_s=statistics.median(closes_steps[1:]),
        first_run_s=runs[0],
    )


def _step_seconds(instance: Any, run_id: str, step: str) -> float:
    import dagster as dg

    events = instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS})
    times = {e.dagster_event.event_type: e.timestamp for e in events if e.step_key == step}
    return times[dg.DagsterEventType.STEP_SUCCESS] - times[dg.DagsterEventType.STEP_START]


# ---- output -----------------------------------------------------------------------------------------------

COLUMNS = (
    ("variant", 10),
    ("quote requests", 14),
    ("orders", 7),
    ("longest tx ms", 13),
    ("held during broker", 18),
    ("peak checkouts", 14),
    ("transactions", 12),
    ("wall s", 9),
    ("closes s", 9),
    ("peak RSS MB", 11),
)


def _num(value: float, extrapolated: bool, digits: int = 0) -> str:
    text = f"{value:,.{digits}f}"
    return f"~{text}" if extrapolated else text


def format_case(case: CaseResult, quote_limit: int) -> str:
    lines = [
        f"## {case.positions:,} positions / {case.symbols:,} symbols — {case.backend}",
        "  ".join(name.rjust(width) for name, width in COLUMNS),
    ]
    for m in case.measurements:
        x = m.extrapolated
        cells = [
            m.variant,
            _num(m.quote_requests, x),
            _num(m.orders_submitted, x),
            _num(m.longest_transaction_ms, x, 1),
            _num(m.checkouts_during_broker_calls, x),
            str(m.peak_checkouts),
            str(m.transactions),
            _num(m.wall_seconds, x, 3),
            "" if m.closes_seconds is None else f"{m.closes_seconds:,.3f}",
            f"{m.peak_rss_mb:,.0f}",
        ]
        lines.append("  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True)))
    ours, naive, sequential = case.get("ours"), case.get("naive"), case.get("ours-seq")
    if ours and sequential and ours.closes_seconds and sequential.closes_seconds:
        lines.append(
            f"closes: {ours.orders_submitted:.0f} orders, the last answered {ours.closes_seconds:.3f} s after the "
            f"decision with {CLOSE_CONCURRENCY} workers vs {sequential.closes_seconds:.3f} s one after another "
            f"(×{sequential.closes_seconds / ours.closes_seconds:,.1f}); ≤ 2 s {_ok(ours.closes_seconds <= 2)}"
        )
    if ours and naive:
        lines.append(
            f"naive/ours: wall ×{naive.wall_seconds / ours.wall_seconds:,.1f}, quote requests "
            f"×{naive.quote_requests / max(ours.quote_requests, 1):,.0f}, longest transaction "
            f"×{naive.longest_transaction_ms / max(ours.longest_transaction_ms, 1e-9):,.0f}"
        )
        expected = math.ceil(case.symbols / quote_limit)
        speedup = naive.wall_seconds / ours.wall_seconds
        # The issue sets the speed target at 10,000 positions; smaller cases are reported, not judged.
        judged = case.positions >= 10_000
        speed = (
            f"≥ 20× faster {_ok(speedup >= 20)}" if judged else f"speed-up ×{speedup:,.1f} (target judged at 10,000)"
        )
        lines.append(
            f"targets (ours): quote requests {ours.quote_requests:.0f} = ⌈{case.symbols}/{quote_limit}⌉ = {expected} "
            f"{_ok(ours.quote_requests == expected)}; longest tx {ours.longest_transaction_ms:.1f} ms < 50 "
            f"{_ok(ours.longest_transaction_ms < 50)}; held during broker calls "
            f"{ours.checkouts_during_broker_calls:.0f} {_ok(ours.checkouts_during_broker_calls == 0)}; "
            f"{speed}"
        )
        if naive.notes:
            lines.append(f"naive: {naive.notes}")
    return "\n".join(lines)


def _ok(passed: bool) -> str:
    return "✓" if passed else "✗ MISSED"


def format_dagster(result: DagsterOverhead) -> str:
    return (
        f"## Dagster stop_loss_job end to end — {result.positions:,} positions / {result.symbols:,} symbols, "
        f"{result.backend}, {result.repetitions} runs after one warm-up\n"
        f"bare sweep median {result.bare_sweep_median_s:.3f} s; Dagster run launch→success median "
        f"{result.dagster_run_median_s:.3f} s (max {result.dagster_run_max_s:.3f} s, first run "
        f"{result.first_run_s:.3f} s); `closes` step median {result.closes_step_median_s:.3f} s; "
        f"overhead {result.overhead_s:.3f} s per run (quotes + positions assets, checks, event log, run storage)"
    )


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores ({model}){memory}, {system}"


# ---- main -------------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        positions, _, symbols = part.partition(":")
        sizes.append((int(positions), int(symbols or positions)))
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES), help="positions:symbols,…")
    parser.add_argument("--latency-ms", type=int, default=20, help="added latency per sim request (default 20)")
    parser.add_argument("--exit-fraction", type=float, default=0.01, help="share of positions beyond their stop")
    parser.add_argument("--baseline-sample", type=int, default=1_000, help="naive sweep: positions measured at most")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_DATABASE_URL"), help="default TEST_DATABASE_URL")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql (Postgres needs a URL)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--no-dagster", action="store_true", help="skip the Dagster end-to-end measurement")
    parser.add_argument("--dagster-size", type=parse_sizes, default=[(100, 50)], help="positions:symbols")
    parser.add_argument("--dagster-runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    return parser


def main(argv: Sequence[str] | None = None, out: Any = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    exit_every = round(1 / args.exit_fraction) if args.exit_fraction > 0 else 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "postgresql" in backends and not args.postgres_url:
        print("postgresql: skipped (no --postgres-url and no TEST_DATABASE_URL)", file=out)
        backends.remove("postgresql")
    print(f"# stop-loss sweep bench — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", file=out)
    print(f"machine: {machine()}", file=out)
    print(
        f"sim latency {args.latency_ms} ms per request; quote chunk limit {QUOTE_CHUNK_SIZE} symbols/request; "
        f"1 in {exit_every or '∞'} positions beyond its stop; naive measured on ≤ {args.baseline_sample} positions",
        file=out,
    )
    cases: list[CaseResult] = []
    dagster: list[DagsterOverhead] = []
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        for name in backends:
            backend = Backend(name, Path(tmp), args.postgres_url if name == "postgresql" else None)
            try:
                if name == "postgresql":
                    print(f"postgresql: {redact(backend.url)}", file=out)
                for positions, symbols in args.sizes:
                    case = CaseResult(name, positions, symbols)
                    kw = {"exit_every": exit_every, "latency_ms": args.latency_ms}
                    case.measurements.append(measure_ours(backend, positions, symbols, **kw))
                    case.measurements.append(measure_ours(backend, positions, symbols, sequential=True, **kw))
                    if not args.no_naive:
                        case.measurements.append(
                            measure_naive(backend, positions, symbols, sample=args.baseline_sample, **kw)
                        )
                    cases.append(case)
                    print("\n" + format_case(case, QUOTE_CHUNK_SIZE), file=out, flush=True)
                if not args.no_dagster:
                    for positions, symbols in args.dagster_size:
                        result = measure_dagster(
                            backend, positions, symbols, latency_ms=args.latency_ms, repetitions=args.dagster_runs
                        )
                        dagster.append(result)
                        print("\n" + format_dagster(result), file=out, flush=True)
            finally:
                backend.close()
    report = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "latency_ms": args.latency_ms,
        "quote_chunk_limit": QUOTE_CHUNK_SIZE,
        "exit_every": exit_every,
        "cases": [
            {**asdict(c), "measurements": [{**asdict(m), "extrapolated": m.extrapolated} for m in c.measurements]}
            for c in cases
        ],
        "dagster": [{**asdict(d), "overhead_s": d.overhead_s} for d in dagster],
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
