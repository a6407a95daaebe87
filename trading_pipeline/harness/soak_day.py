"""One soak session: the script (positions opened straight into the sim, moves through their levels), the
observer (which reads the true market before every run and notes when each position first crossed a level),
the runs (the product's own reconciliation + sweep), and the judge (invariants from the DB and the broker's
book, never from the pipeline's counters)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from trading_pipeline.broker.base import BrokerError
from trading_pipeline.domain.exits import InvalidQuote, decide_exit
from trading_pipeline.domain.ids import parse_client_order_id
from trading_pipeline.domain.strategy import price_level
from trading_pipeline.domain.types import ExitReason, OrderAction, PositionSide, Quote, TradeStatus
from trading_pipeline.harness.soak_book_faults import BookFaults
from trading_pipeline.harness.soak_report import MAX_CLOSE_DELAY_RUNS, SoakReport
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

if TYPE_CHECKING:  # the simulator loads only when a soak runs, not when the CLI starts
    from trading_pipeline.sim.server import SimBroker

RUN_EVERY = timedelta(minutes=2)
STOP_PCT = Decimal(3)
TAKE_PROFIT_PCT = Decimal(6)


@dataclass
class Crossing:
    """One episode of a position beyond a level: from the first run that saw it there to its close, or to the
    run that saw the price back inside its levels (a heal) while the trade was still open."""

    trade_id: str
    symbol: str
    run: int
    healed_at: int | None = None
    closed_at: int | None = None


class SoakDay(BookFaults):
    def __init__(
        self,
        db: Database,
        sim: SimBroker,
        broker: Any,
        rng: random.Random,
        target: int,
        report: SoakReport,
        fault_rate: float = 0.0,
    ) -> None:
        self.fault_rate = fault_rate
        self.db = db
        self.sim = sim
        self.broker = broker
        self.rng = rng
        self.target = target
        self.report = report
        self.crossings: list[Crossing] = []
        self.active: dict[str, Crossing] = {}  # trade id → its episode in progress
        self.closed_at_run: dict[str, int] = {}
        self.judged: dict[int, set[str]] = {}  # run → symbols a sweep judged with a usable quote
        self.drifted: set[str] = set()  # symbols whose broker quantity the script moved since the last run
        self.drift_pending: set[str] = set()  # drifts reported, whose repair waits for a later run
        self.bought: Counter[str] = (
            Counter()
        )  # shares (Decimal: fractional where the asset is) bought per symbol, to judge oversells from the book
        self._symbols = self._candidate_symbols()
        self._outside_count = 0
        self.renamed: dict[str, str] = {}  # OLD → NEW: symbols the script renamed at the broker
        self.listing_faulty = False  # this run's positions listing is empty or another account's

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
            if order.status == "partially_filled":  # the script takes what filled and cancels the rest
                order = self.sim.market.cancel_order(order.id)
            if order.filled_qty <= 0 or order.filled_avg_price is None:
                continue
            price = order.filled_avg_price
            self.bought[symbol] += order.filled_qty
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
                self.active[key] = episode = Crossing(key, trade.symbol, number)
                self.crossings.append(episode)
            elif not beyond and active is not None:
                active.healed_at = number
                del self.active[key]

    # ---- one run ----

    def run(self, number: int, *, settle: bool) -> None:
        from trading_pipeline.steps.closes import run_stop_loss_sweep
        from trading_pipeline.steps.outside_positions import ADOPT, handle_outside_positions
        from trading_pipeline.steps.reconcile import reconcile_positions

        if number > 1:
            self.sim.market.advance(RUN_EVERY)
        self.listing_faulty = False
        if not settle:
            self.open_positions()
            self.script_moves()
            self.book_faults(self.fault_rate)
        self.observe(number)
        run_id = f"soak-{number}"
        now = self.sim.market.now
        judged: set[str] = set()
        try:
            positions = self.broker.positions()
            reconciliation = reconcile_positions(self.db, self.broker, now=now, broker_positions=positions)
            adoption = handle_outside_positions(
                self.db,
                self.broker,
                positions,
                reconciliation,
                policy=ADOPT,
                stop_loss_pct=STOP_PCT,
                take_profit_pct=TAKE_PROFIT_PCT,
                now=now,
                run_id=run_id,
            )
            self.report.adopted += len(adoption.adopted)
            # A divergence the script made (drift) must show up — and is repaired, here or (when the broker could
            # not say how it closed) in a later run, reported again until then; any other is a problem.
            reported = set(reconciliation.mismatches)
            # Outside buys and renames show as divergences too, explained by what the script did.
            renamed = set(self.renamed) | set(self.renamed.values())
            explained = self.drifted | self.drift_pending | renamed | set(adoption.adopted)
            if self.listing_faulty:  # the listing lied this run: every divergence is the fault's
                explained |= set(reconciliation.mismatches)
            unexplained = {s: t for s, t in reconciliation.mismatches.items() if s not in explained}
            if unexplained:
                self.report.reconcile_mismatch_runs += 1
                self.report.problems.append(f"run {number}: reconciliation mismatch {unexplained}")
            missed = self.drifted - reported - set(reconciliation.closing_symbols)
            if missed:
                self.report.problems.append(f"run {number}: drift at the broker not reported: {sorted(missed)}")
                self.report.divergences_unreported += len(missed)
            self.drift_pending = explained & reported - set(reconciliation.repaired)
            self.drifted.clear()
            self.renamed.clear()
        except BrokerError as exc:  # the positions step fails and alerts; the sweep is judged alone
            self.report.outage_failures.append(f"run {number}: reconciliation: {exc}")
        try:
            before = {t.symbol for t in trades_repo.open_trades(self.db)}
            # One symbol after another: the soak replays the same requests (and so the same seeded faults) on
            # every run of a seed. The concurrent path is soaked through the Dagster job in the test suite.
            result = run_stop_loss_sweep(
                self.db, self.broker, run_id=run_id, now=now, max_quote_age=timedelta(minutes=5), close_concurrency=1
            )
            judged = before - set(result.flagged_positions)
            self.report.closes_reported_by_sweeps += result.closed
        except BrokerError as exc:  # no quotes through every retry: the run fails (and alerts); the next one closes
            self.report.failed_runs += 0 if settle else 1
            self.report.outage_failures.append(f"run {number}: sweep: {exc}")
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
        report.partial_fills = sum(
            1
            for a in adjustments_repo.adjustments(self.db)
            if a.kind in (adjustments_repo.PARTIAL_CLOSE, adjustments_repo.PARTIAL_ENTRY)
        )
        report.crossings = len(self.crossings)

        # The broker's book: ids unique, every close fill recorded once at its quantity and price, nothing short,
        # never more sold than bought. A close filled in part splits its trade, so fills are matched by order.
        book = self.sim.market.book
        ids = Counter(order.client_order_id for order in book.orders.values())
        for cid, n in ids.items():
            if n > 1:
                report.duplicates += n - 1
                report.problems.append(f"client_order_id {cid} used by {n} broker orders")
        closed_by_cid = {t.close_client_order_id: t for t in closed.values() if t.close_client_order_id}
        for order in book.orders.values():
            parsed = parse_client_order_id(order.client_order_id)
            if parsed is None or parsed[1] is not OrderAction.CLOSE or order.filled_qty <= 0:
                continue
            trade = closed_by_cid.get(order.client_order_id)
            if trade is None:
                report.lost += 1
                report.problems.append(f"close order {order.client_order_id} filled at the broker, no closed trade")
            elif trade.qty != order.filled_qty or trade.close_price != order.filled_avg_price:
                report.lost += 1
                report.problems.append(
                    f"trade {trade.id}: DB closed {trade.qty} at {trade.close_price}, broker filled "
                    f"{order.filled_qty} at {order.filled_avg_price}"
                )
        by_cid = {order.client_order_id: order for order in book.orders.values()}
        for trade_id, trade in closed.items():
            if trade.close_reason is ExitReason.MANUAL:
                # Closed outside the pipeline: only on evidence — a sell the script placed in the dashboard that
                # filled after the trade's entry, in its symbol.
                sold_outside = [
                    o
                    for o in book.orders.values()
                    if o.symbol == trade.symbol
                    and o.side == "sell"
                    and o.filled_qty > 0
                    and parse_client_order_id(o.client_order_id) is None
                    and (o.filled_at is None or o.filled_at >= trade.entry_at)
                ]
                if not sold_outside:
                    report.write_offs_without_evidence += 1
                    report.problems.append(f"trade {trade_id} ({trade.symbol}) written off with no fill at the broker")
                continue
            fill = by_cid.get(trade.close_client_order_id or "")
            if fill is None or fill.filled_qty <= 0:
                report.lost += 1
                report.problems.append(
                    f"trade {trade_id} ({trade.symbol}): closed in the DB, its order "
                    f"{trade.close_client_order_id} has no fill at the broker"
                )
        sold: Counter[str] = Counter()
        for order in book.orders.values():
            if order.side == "sell" and parse_client_order_id(order.client_order_id) is not None:
                sold[order.symbol] += order.filled_qty
        oversold = {symbol: (n, self.bought[symbol]) for symbol, n in sold.items() if n > self.bought[symbol]}
        if oversold:
            report.oversells += len(oversold)
            report.problems.append(f"sold more than bought (symbol: sold, bought): {oversold}")
        shorts = [p.symbol for p in book.positions.values() if p.qty < 0]
        if shorts:
            report.oversells += len(shorts)
            report.problems.append(f"short positions at the broker (more sold than held): {shorts}")

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
        # Every share the broker holds has a stop: an open trade in its symbol for its whole quantity.
        protected: Counter[str] = Counter()
        for trade in trades_repo.open_trades(self.db):
            protected[trade.symbol] += trade.qty
        for position in book.positions.values():
            if position.qty > 0 and protected[position.symbol] < position.qty:
                report.unprotected += 1
                report.problems.append(
                    f"{position.symbol}: the broker holds {position.qty}, trades protect {protected[position.symbol]}"
                )
        if not report.reconciliation_clean:
            report.problems.append(
                f"final reconciliation: missing {reconciliation.missing_at_broker}, extra "
                f"{reconciliation.extra_at_broker}, qty {reconciliation.qty_mismatch}, closing "
                f"{reconciliation.closing_symbols}"
            )
