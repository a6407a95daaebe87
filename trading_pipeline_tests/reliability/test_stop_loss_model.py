"""A model-based test of the stop-loss invariant against the sim broker (hypothesis `RuleBasedStateMachine`).

Random sequences of: positions opened, price paths (gaps through stops, drifts, recoveries), faults on any
endpoint, orders placed outside the pipeline, quantity drift at the broker, partial fills, crashes between a
claim and its record, and overlapping runs. A "run" is what the stop-loss job does — the positions step
(pending entries, protection, reconciliation with repair) then the sweep — through the real alpaca-py
adapter. After every step:

- nothing was sold that the broker did not hold: no position at the broker ever goes short;
- no order took effect twice: no client_order_id has two broker orders, and the shares sold per symbol never
  exceed the shares bought;
- every position below its stop at the broker had a sell submitted within 2 fault-free runs of the cross;
- every divergence (DB open quantity ≠ broker quantity) shows up as a failed reconciliation that run.

Bounded for CI (`TP_MODEL_EXAMPLES`, default 12 examples of up to 25 steps, about a minute); a longer profile:
`TP_MODEL_EXAMPLES=300 TP_MODEL_STEPS=60 .venv/bin/python -m pytest -q -k stop_loss_model trading_pipeline_tests`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from trading_pipeline.broker.base import BrokerError
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.domain.strategy import price_level
from trading_pipeline.domain.types import PositionSide, TradeStatus
from trading_pipeline.sim.server import SimBroker
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.steps.protection import protect_positions
from trading_pipeline.steps.reconcile import Reconciliation, reconcile_positions, resolve_pending_entries
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline.store.migrate import upgrade
from trading_pipeline_tests.sim_fixtures import SESSION_START, make_broker, tradable_symbols

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("TP_MODEL_EXAMPLES", "12"))
STEPS = int(os.environ.get("TP_MODEL_STEPS", "25"))
SYMBOLS = 6
ROUTES = ["GET /v2/positions", "GET /v2/orders", "GET /v2/clock", "POST /v2/orders", "GET /v2/stocks/quotes/latest"]
FAST = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_cap=0.005, max_retry_after=0.01)
MAX_RUNS_TO_SELL = 2
FAULTS = ["500", "503", "429", "timeout"]


class Crash(Exception):
    """A run killed between its claim and its record (the DB keeps the `closing` row)."""


class StopLossModel(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="tp-model-")
        self.db_url = f"sqlite:///{Path(self.folder.name) / 'model.db'}"
        self.db = Database(self.db_url)
        upgrade(self.db)
        self.sim = SimBroker(seed=5, n_symbols=60, start=SESSION_START, realtime=False).start()
        self.broker = make_broker(self.sim, timeout=1.0, retry=FAST, fill_wait_seconds=0.0)
        self.symbols = tradable_symbols(self.sim.market, SYMBOLS)
        self.bought: dict[str, Decimal] = defaultdict(Decimal)
        self.crossed_for: dict[str, int] = {}  # symbol → fault-free runs since its position was seen beyond stop
        self.faulty = False
        self.runs = 0

    def teardown(self) -> None:
        if hasattr(self, "sim"):
            self.sim.stop()
            self.db.dispose()
            self.folder.cleanup()

    # ---- the world ----------------------------------------------------------------------------------

    @rule(index=st.integers(0, SYMBOLS - 1), qty=st.integers(1, 40))
    def open_position(self, index: int, qty: int) -> None:
        symbol = self.symbols[index]
        order = self.sim.market.submit_order(
            {"symbol": symbol, "qty": str(qty), "side": "buy", "type": "market", "time_in_force": "day"}
        )
        if order.status == "partially_filled":  # the model takes what filled and cancels the rest
            order = self.sim.market.cancel_order(order.id)
        if order.filled_qty <= 0 or order.filled_avg_price is None:
            return
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
                stop_loss=price_level(price, Decimal(3), up=False),
                take_profit=price_level(price, Decimal(8), up=True),
            ),
        )

    @rule(index=st.integers(0, SYMBOLS - 1), pct=st.sampled_from([-25, -12, -5, -2, 2, 5, 12]))
    def move_price(self, index: int, pct: int) -> None:
        self.sim.market.gap(self.symbols[index], pct)

    @rule(index=st.integers(0, SYMBOLS - 1), keep=st.sampled_from([Decimal("0.5"), Decimal("0.8"), Decimal(0)]))
    def drift(self, index: int, keep: Decimal) -> None:
        """Shares gone at the broker behind the pipeline's back (sold by hand, a transfer)."""
        position = self.sim.market.book.positions.get(self.symbols[index])
        if position is None or position.qty <= 1:
            return
        left = (position.qty * keep).to_integral_value()
        if left <= 0:
            self.sim.market.close_position(position.symbol)
        else:
            position.qty = left

    @rule(index=st.integers(0, SYMBOLS - 1))
    def outside_order(self, index: int) -> None:
        """A GTC sell limit far above the market placed in the web app: it holds the shares a close needs."""
        symbol = self.symbols[index]
        position = self.sim.market.book.positions.get(symbol)
        if position is None or position.qty <= 0:
            return
        limit = (self.sim.market.last_price(symbol) * 3).quantize(Decimal("0.01"))
        try:
            self.sim.market.submit_order(
                {
                    "symbol": symbol,
                    "qty": str(position.qty),
                    "side": "sell",
                    "type": "limit",
                    "limit_price": str(limit),
                    "time_in_force": "gtc",
                }
            )
        except Exception:  # the sim refuses it when the shares are already held: the world just goes on
            return

    @rule(
        route=st.sampled_from(ROUTES), kind=st.sampled_from(["500", "503", "429", "timeout"]), count=st.integers(1, 4)
    )
    def fault(self, route: str, kind: str, count: int) -> None:
        self.sim.faults.configure(timeout_seconds=1.5, retry_after_seconds=0)
        self.sim.faults.fail_next(kind, count=count, route=route)
        self.faulty = True

    @rule(on=st.booleans())
    def partial_fills(self, on: bool) -> None:
        self.sim.market.configure_partial_fills(rate=0.5 if on else 0.0, fraction=Decimal("0.5"))

    # ---- the pipeline -------------------------------------------------------------------------------

    def stop_loss_run(self, db: Database | None = None) -> Reconciliation | None:
        """The stop-loss job's work: the positions step (never failing on the broker), then the sweep."""
        db = db or self.db
        now = self.sim.market.now
        result: Reconciliation | None = Reconciliation()
        resolve_pending_entries(db, self.broker, result, now=now)
        try:
            held = protect_positions(db, self.broker, now=now).broker_positions
        except BrokerError:
            held = None
        try:
            result = reconcile_positions(db, self.broker, now=now, broker_positions=held, resolve_pending=False)
        except BrokerError:
            result = None
        with contextlib.suppress(BrokerError):  # a quote outage: nothing judged, counted as a faulty run below
            run_stop_loss_sweep(db, self.broker, run_id=f"model-{self.runs}", now=now, max_quote_age=None)
        return result

    def after_run(self, reconciliation: Reconciliation | None) -> None:
        self.runs += 1
        faulty, self.faulty = self.faulty or self.sim.faults.scripted_pending(), False
        self.check_divergence_reported(reconciliation)
        for symbol in self.symbols:
            position = self.sim.market.book.positions.get(symbol)
            quote = self.sim.market.quote(symbol)
            open_trades = [t for t in trades_repo.open_trades(self.db) if t.symbol == symbol]
            beyond = (
                position is not None
                and position.qty > 0
                and quote is not None
                and any(t.stop_loss is not None and quote.bid <= t.stop_loss for t in open_trades)
            )
            if not beyond:
                self.crossed_for.pop(symbol, None)
            elif not faulty:
                self.crossed_for[symbol] = self.crossed_for.get(symbol, 0) + 1

    def check_divergence_reported(self, reconciliation: Reconciliation | None) -> None:
        if reconciliation is None:
            return  # the positions could not be read: reported as unavailable by the step itself
        closing = {t.symbol for t in trades_repo.closing_trades(self.db)}
        for symbol in set(self.symbols) - closing:
            ours = sum((t.qty for t in trades_repo.open_trades(self.db) if t.symbol == symbol), Decimal(0))
            position = self.sim.market.book.positions.get(symbol)
            theirs = position.qty if position is not None else Decimal(0)
            if ours != theirs and not reconciliation.repaired.get(symbol):
                assert not reconciliation.clean, f"{symbol}: DB {ours}, broker {theirs}, reconciliation clean"

    @rule()
    def run(self) -> None:
        self.after_run(self.stop_loss_run())
        self.sim.market.advance(timedelta(minutes=2))

    @rule()
    def overlapping_runs(self) -> None:
        """Two runs at once (a schedule tick and a sensor request): the claim lets one of them close each trade."""
        outcomes: list[Reconciliation | None] = []
        engines = [Database(self.db_url) for _ in range(2)]  # each run its own engine, as two processes would

        def one(db: Database) -> None:
            outcomes.append(self.stop_loss_run(db))

        threads = [threading.Thread(target=one, args=(db,)) for db in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for db in engines:
            db.dispose()
        self.faulty = True  # two runs racing: judged by the invariants, not counted toward the 2-run limit
        self.after_run(outcomes[-1] if outcomes else None)
        self.sim.market.advance(timedelta(minutes=2))

    @rule()
    def crash_between_claim_and_record(self) -> None:
        real = claims_repo.record_close

        def crash(*args, **kwargs):
            raise Crash("killed after the broker filled, before the record")

        claims_repo.record_close = crash  # type: ignore[assignment]
        try:
            run_stop_loss_sweep(self.db, self.broker, run_id="crashed", now=self.sim.market.now, max_quote_age=None)
        except (Crash, BrokerError):  # killed, or the quotes were down: nothing was claimed then
            pass
        finally:
            claims_repo.record_close = real  # type: ignore[assignment]
        self.faulty = True  # the crashed run does not count toward the 2-run limit
        self.sim.market.advance(timedelta(minutes=2))

    # ---- the invariants -----------------------------------------------------------------------------

    @invariant()
    def never_short(self) -> None:
        if not hasattr(self, "sim"):
            return
        for symbol, position in self.sim.market.book.positions.items():
            assert position.qty >= 0, f"{symbol} went short ({position.qty}): sold more than held"

    @invariant()
    def no_order_took_effect_twice(self) -> None:
        if not hasattr(self, "sim"):
            return
        orders = list(self.sim.market.book.orders.values())
        ids = [o.client_order_id for o in orders]
        assert len(ids) == len(set(ids)), "a client_order_id was used twice"
        sold: dict[str, Decimal] = defaultdict(Decimal)
        for order in orders:
            if order.side == "sell":
                sold[order.symbol] += order.filled_qty
        for symbol, qty in sold.items():
            assert qty <= self.bought[symbol], f"{symbol}: sold {qty}, bought {self.bought[symbol]}"

    @invariant()
    def stops_sold_within_two_fault_free_runs(self) -> None:
        if not hasattr(self, "sim"):
            return
        late = {s: n for s, n in self.crossed_for.items() if n > MAX_RUNS_TO_SELL}
        assert not late, f"positions beyond their stop for more than {MAX_RUNS_TO_SELL} fault-free runs: {late}"

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def no_trade_left_pending(self) -> None:
        for trade in trades_repo.trades_with_status(self.db, TradeStatus.PENDING_OPEN):
            raise AssertionError(f"pending entry left: {trade.symbol}")


StopLossModel.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_stop_loss_model = StopLossModel.TestCase
