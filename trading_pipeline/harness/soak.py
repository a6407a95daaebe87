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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.domain.exits import InvalidQuote, decide_exit
from trading_pipeline.domain.ids import parse_client_order_id
from trading_pipeline.domain.strategy import price_level
from trading_pipeline.domain.types import OrderAction, PositionSide, Quote, TradeStatus
from trading_pipeline.settings import SettingsError
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database, redact
from trading_pipeline.store.migrate import upgrade

if TYPE_CHECKING:  # the simulator and the SDK load only when a soak runs, not when the CLI starts
    from trading_pipeline.sim.server import SimBroker

MAX_CLOSE_DELAY_RUNS = 2
RUN_EVERY = timedelta(minutes=2)
SESSION_MINUTES = 390
# A regular session (Tuesday 24 November 2026), the one the test suite uses: no holiday, no half day.
DEFAULT_SESSION_OPEN = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
FAULT_KINDS = ("429", "500", "503", "504", "timeout", "drop", "drop_502")
# Fast but real: the soak runs in simulated time, so waits are kept short; Retry-After is honoured up to
# `max_retry_after` (the adapter's own cap), which keeps a 1 s Retry-After from dominating the wall time.
SOAK_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05, max_retry_after=0.05)
SOAK_REQUEST_TIMEOUT = 0.25
STOP_PCT = Decimal(3)
TAKE_PROFIT_PCT = Decimal(6)


@dataclass
class SoakReport:
    minutes: int
    fault_rate: float
    seed: int
    database: str
    runs: int = 0
    failed_runs: int = 0
    settle_runs: int = 0
    requests: int = 0
    faults_injected: int = 0
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    positions_opened: int = 0
    crossings: int = 0
    closes: int = 0
    closes_by_reason: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    lost: int = 0
    healed_before_close: int = 0
    max_close_delay_runs: int = 0
    closing_left: int = 0
    reconcile_mismatch_runs: int = 0
    reconciliation_clean: bool = True
    checkouts_during_broker_calls: int = 0
    wall_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    closes_reported_by_sweeps: int = 0  # progress only; `closes` is judged from the DB at the end
    close_delays: dict[str, int] = field(default_factory=dict)  # trade id → runs from cross to close

    @property
    def ok(self) -> bool:
        return (
            self.duplicates == 0
            and self.lost == 0
            and self.max_close_delay_runs <= MAX_CLOSE_DELAY_RUNS
            and self.closing_left == 0
            and self.reconciliation_clean
            and self.reconcile_mismatch_runs == 0
            and self.checkouts_during_broker_calls == 0
        )


@dataclass
class _Crossing:
    """One episode of a position beyond a level: from the first run that saw it there to its close, or to the
    run that saw the price back inside its levels (a heal) while the trade was still open."""

    trade_id: str
    symbol: str
    run: int
    healed_at: int | None = None
    closed_at: int | None = None


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
            day = _SoakDay(db, sim, broker, rng, plan.positions, report)
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


class _SoakDay:
    def __init__(
        self, db: Database, sim: SimBroker, broker: Any, rng: random.Random, target: int, report: SoakReport
    ) -> None:
        self.db = db
        self.sim = sim
        self.broker = broker
        self.rng = rng
        self.target = target
        self.report = report
        self.crossings: list[_Crossing] = []
        self.active: dict[str, _Crossing] = {}  # trade id → its episode in progress
        self.closed_at_run: dict[str, int] = {}
        self.judged: dict[int, set[str]] = {}  # run → symbols a sweep judged with a usable quote
        self._symbols = self._candidate_symbols()

    # ---- between runs: open, script, observe ----

    def _candidate_symbols(self) -> list[str]:
        return [
            a.symbol
            for a in self.sim.market.assets
            if a.status == "active" and a.tradable and a.symbol != "SPY" and self._price(a.symbol) >= Decimal(5)
        ]

    def _price(self, symbol: str) -> Decimal:
        quote = self.sim.market.quote(symbol)
        return Decimal(0) if quote is None else quote.bid

    def open_positions(self) -> None:

        live = trades_repo.open_trades(self.db) + trades_repo.closing_trades(self.db)
        held = {t.symbol for t in live} | set(self.sim.market.book.positions)
        free = [s for s in self._symbols if s not in held]
        for symbol in self.rng.sample(free, min(len(free), max(0, self.target - len(live)))):
            order = self.sim.market.submit_order(
                {"symbol": symbol, "qty": "5", "side": "buy", "type": "market", "time_in_force": "day"}
            )
            if order.status != "filled" or order.filled_avg_price is None:
                continue
            price = order.filled_avg_price
            trades_repo.insert_trade(
                self.db,
                trades_repo.NewTrade(
                    symbol=symbol,
                    side=PositionSide.LONG,
                    qty=order.filled_qty,
                    entry_price=price,
                    entry_at=self.sim.market.now,
                    stop_loss=price_level(price, STOP_PCT, up=False),
                    take_profit=price_level(price, TAKE_PROFIT_PCT, up=True),
                    strategy="soak",
                    status=TradeStatus.OPEN,
                ),
            )
            self.report.positions_opened += 1

    def script_moves(self) -> None:
        """Gap some open positions through a level: down through the stop, or up through the take-profit."""

        trades = sorted(trades_repo.open_trades(self.db), key=lambda t: t.symbol)
        if not trades:
            return
        downs = self.rng.choice((0, 1, 1, 2))
        ups = self.rng.choice((0, 0, 1))
        for trade in self.rng.sample(trades, min(len(trades), downs + ups)):
            if downs > 0:
                self.sim.market.gap(trade.symbol, -self.rng.uniform(6, 20))
                downs -= 1
            else:
                self.sim.market.gap(trade.symbol, self.rng.uniform(8, 14))

    def observe(self, number: int) -> None:
        """Before the run, from the true market: which positions are beyond a level right now."""

        # A `closing` trade is in the protocol's hands: its episode runs on until the close is recorded.
        for trade in trades_repo.open_trades(self.db):
            sim_quote = self.sim.market.quote(trade.symbol)
            if sim_quote is None:
                continue
            quote = Quote(trade.symbol, sim_quote.bid, sim_quote.ask, sim_quote.timestamp)
            try:
                beyond = decide_exit(trade.position_view(), quote) is not None
            except InvalidQuote:
                continue
            key = str(trade.id)
            active = self.active.get(key)
            if beyond and active is None:
                self.active[key] = episode = _Crossing(key, trade.symbol, number)
                self.crossings.append(episode)
            elif not beyond and active is not None:
                active.healed_at = number
                del self.active[key]

    # ---- one run ----

    def run(self, number: int, *, settle: bool) -> None:
        from trading_pipeline.steps.closes import run_stop_loss_sweep
        from trading_pipeline.steps.reconcile import reconcile_positions

        if number > 1:
            self.sim.market.advance(RUN_EVERY)
        if not settle:
            self.open_positions()
            self.script_moves()
        self.observe(number)
        run_id = f"soak-{number}"
        now = self.sim.market.now
        judged: set[str] = set()
        try:
            reconciliation = reconcile_positions(self.db, self.broker, now=now)
            if not reconciliation.clean:
                self.report.reconcile_mismatch_runs += 1
                self.report.problems.append(
                    f"run {number}: reconciliation mismatch {reconciliation.missing_at_broker} "
                    f"{reconciliation.extra_at_broker} {reconciliation.qty_mismatch}"
                )
        except Exception as exc:  # a broker outage fails the job's positions step; the sweep is judged alone
            self.report.problems.append(f"run {number}: reconciliation failed: {type(exc).__name__}: {exc}")
        try:
            before = {t.symbol for t in trades_repo.open_trades(self.db)}
            result = run_stop_loss_sweep(
                self.db, self.broker, run_id=run_id, now=now, max_quote_age=timedelta(minutes=5)
            )
            judged = before - set(result.flagged_positions)
            self.report.closes_reported_by_sweeps += result.closed
        except Exception as exc:
            self.report.failed_runs += 0 if settle else 1
            self.report.problems.append(f"run {number}: sweep failed: {type(exc).__name__}: {exc}")
        self.judged[number] = judged
        for trade in trades_repo.trades_with_status(self.db, TradeStatus.CLOSED):
            key = str(trade.id)
            if key not in self.closed_at_run:
                self.closed_at_run[key] = number
                episode = self.active.pop(key, None)
                if episode is not None:
                    episode.closed_at = number

    # ---- the verdict ----

    def judge(self, last_run: int) -> None:
        from trading_pipeline.broker.alpaca import AlpacaBroker
        from trading_pipeline.steps.reconcile import reconcile_positions

        report = self.report
        closed = {str(t.id): t for t in trades_repo.trades_with_status(self.db, TradeStatus.CLOSED)}
        report.closes = len(closed)
        report.closes_by_reason = dict(
            sorted(Counter(t.close_reason.value if t.close_reason else "unknown" for t in closed.values()).items())
        )
        report.closing_left = len(trades_repo.closing_trades(self.db))
        report.crossings = len(self.crossings)

        # The broker's book: one filled close per trade, ids unique, nothing short.
        book = self.sim.market.book
        ids = Counter(order.client_order_id for order in book.orders.values())
        fills_by_trade: dict[str, list[Any]] = {}
        for order in book.orders.values():
            parsed = parse_client_order_id(order.client_order_id)
            if parsed is None or parsed[1] is not OrderAction.CLOSE:
                continue
            if order.filled_qty > 0:
                fills_by_trade.setdefault(str(parsed[0]), []).append(order)
        for cid, n in ids.items():
            if n > 1:
                report.duplicates += n - 1
                report.problems.append(f"client_order_id {cid} used by {n} broker orders")
        for trade_id, fills in fills_by_trade.items():
            if len(fills) > 1:
                report.duplicates += len(fills) - 1
                report.problems.append(f"trade {trade_id}: {len(fills)} filled close orders at the broker")
            if trade_id not in closed:
                report.lost += 1
                report.problems.append(f"trade {trade_id}: closed at the broker, not recorded as closed in the DB")
        by_cid = {order.client_order_id: order for order in book.orders.values()}
        for trade_id, trade in closed.items():
            fill = by_cid.get(trade.close_client_order_id or "")
            if fill is None or fill.filled_qty <= 0:
                report.lost += 1
                report.problems.append(
                    f"trade {trade_id} ({trade.symbol}): closed in the DB, its order "
                    f"{trade.close_client_order_id} has no fill at the broker"
                )
            elif trade.close_price != fill.filled_avg_price:
                report.lost += 1
                report.problems.append(
                    f"trade {trade_id}: DB close price {trade.close_price}, broker fill {fill.filled_avg_price}"
                )
        shorts = [p.symbol for p in book.positions.values() if p.qty < 0]
        if shorts:
            report.duplicates += len(shorts)
            report.problems.append(f"short positions at the broker (a close sent twice): {shorts}")

        # Every crossed position closed within the allowed number of runs.
        for episode in self.crossings:
            if episode.closed_at is not None:
                delay = episode.closed_at - episode.run
                report.close_delays[episode.trade_id] = delay
                report.max_close_delay_runs = max(report.max_close_delay_runs, delay)
                if delay > MAX_CLOSE_DELAY_RUNS:
                    report.problems.append(
                        f"{episode.symbol}: closed {delay} runs after its cross at run {episode.run}"
                    )
            elif episode.healed_at is not None:
                seen = [r for r in range(episode.run, episode.healed_at) if episode.symbol in self.judged.get(r, set())]
                if not seen:
                    report.healed_before_close += 1  # every sweep in between failed: none could see the cross
                    continue
                report.lost += 1
                report.problems.append(
                    f"{episode.symbol}: beyond its level when run(s) {seen} judged it, not closed; the price came "
                    f"back at run {episode.healed_at}"
                )
            else:
                report.lost += 1
                report.problems.append(f"{episode.symbol}: crossed at run {episode.run}, not closed by run {last_run}")

        # DB and broker agree, judged with the faults off.
        client = AlpacaBroker("soak-key", "soak-secret", trading_url=self.sim.url, data_url=self.sim.url)
        try:
            reconciliation = reconcile_positions(self.db, client, now=self.sim.market.now)
        finally:
            client.close()
        report.reconciliation_clean = reconciliation.clean and not reconciliation.closing_symbols
        if not report.reconciliation_clean:
            report.problems.append(
                f"final reconciliation: missing {reconciliation.missing_at_broker}, extra "
                f"{reconciliation.extra_at_broker}, qty {reconciliation.qty_mismatch}, closing "
                f"{reconciliation.closing_symbols}"
            )


def render_report(report: SoakReport) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in report.faults_by_kind.items()) or "none"
    reasons = ", ".join(f"{reason} {n}" for reason, n in report.closes_by_reason.items()) or "none"
    rows = [
        ("runs", f"{report.runs} (+{report.settle_runs} settle runs without faults); {report.failed_runs} failed"),
        ("broker requests", str(report.requests)),
        (
            "faults injected",
            f"{report.faults_injected} ({report.faults_injected / max(1, report.requests):.0%}): {kinds}",
        ),
        ("positions opened", str(report.positions_opened)),
        ("crossings observed", str(report.crossings)),
        ("closes", f"{report.closes} ({reasons})"),
        ("duplicates", str(report.duplicates)),
        ("lost", str(report.lost)),
        ("max close delay", f"{report.max_close_delay_runs} runs (limit {MAX_CLOSE_DELAY_RUNS})"),
        ("healed before judged", str(report.healed_before_close)),
        ("closing rows left", str(report.closing_left)),
        (
            "reconciliation",
            "clean"
            if report.reconciliation_clean and not report.reconcile_mismatch_runs
            else f"MISMATCH ({report.reconcile_mismatch_runs} runs)",
        ),
        ("connections held in broker calls", str(report.checkouts_during_broker_calls)),
        ("wall time", f"{report.wall_seconds:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"== soak: {report.minutes} simulated minutes, fault rate {report.fault_rate:.0%}, seed {report.seed}, "
        f"DB {report.database} ==",
        *(f"{name:<{width}}  {value}" for name, value in rows),
        f"verdict{' ' * (width - 7)}  {'PASS' if report.ok else 'FAIL'}",
    ]
    if report.problems and not report.ok:
        lines.append("problems:")
        lines.extend(f"  - {problem}" for problem in report.problems[:30])
    return "\n".join(lines)
