"""A model-based test of the stop-loss invariant against the sim broker (hypothesis `RuleBasedStateMachine`).

A "run" is what the stop-loss job does — the positions step (pending entries, protection, reconciliation with
repair) then the sweep — through the real alpaca-py adapter against the sim broker over HTTP.

The world's rules. Each one only does what Alpaca lets a client or a person in the dashboard do; a case Alpaca
would refuse is either made legal the way a person would (cancel first) or not drawn. Rules that act on a
position pick it among the symbols where it exists (`index` modulo their number), so few steps are wasted:
- `open_position(index, qty)`: a filled market buy and its open trade in the DB (3% stop). Not drawn while the
  market is closed (the buy would wait for the open and fill unseen), nor while an open sell order exists for the
  symbol (Alpaca rejects it as a potential wash trade; the sim does not model that check). A partial fill keeps
  what filled and cancels the rest.
- `move_price(index, pct)`: a gap of -25 … +12 % (through stops, and back) in a held symbol.
- `drift(index, keep)`: shares leave behind the pipeline's back — keep 0: a person presses "close position"
  (a market sell); keep ½, ⅘: a transfer out. Alpaca refuses both for shares held by open orders (403), so first,
  as a person would, the orders holding them (an outside order, the pipeline's legs or its working close) are
  cancelled and the cancels waited for, only as many as needed to free what leaves.
- `outside_order(index, part)`: a GTC sell limit far above the market placed in the web app for all (or half) of
  the shares not already held for orders — drawn only when some are free, so Alpaca would accept it. It holds
  the shares a close needs.
- `outside_short(index, qty)`: another script sells short a symbol the account holds none of while the
  pipeline's trade in it is still open (after a drift to 0): the broker's position is then short. Drawn only with
  no position and no open order in the symbol (Alpaca does not flip a long in one order).
- `fault(route, kind, count)`: 500/503/429/timeout on the next `count` calls of one endpoint during the next
  run (what that run does not meet is dropped after it, so a fault never lingers unseen into later runs).
- `partial_fills(on)`: market orders fill half now, the rest at a later matching pass.
- `slow_cancels(reads)`: a cancel shows `pending_cancel` (still holding the shares) for the next 0/2/4 reads.
- `run(positions_step)`: one stop-loss run; without the positions step (it failed before its repair, e.g. on
  the DB) the sweep runs alone, as the design requires — closes never depend on reconciliation.
- `overlapping_runs()` (two runs at once, each with its own engine), `crash_between_claim_and_record()` (the
  broker filled, the record never committed). Every run moves the clock 2 minutes.
A run is *fault-free* for the 2-run limit unless a crash, an overlap, or a fault on a route a sale cannot do
without (`CRITICAL_ROUTES`: submitting orders, quotes, cancelling and confirming the cancel of what holds the
shares) touched it; faults on the positions or orders listings, a single position or the client-order-id lookup
have fallbacks on the close path and do not excuse a missed stop.

The invariants, checked after every step:
- `never_deepened_a_short`: the pipeline never sold what the broker did not hold — no position is more short
  than the world's own short sales made it;
- `no_order_took_effect_twice`: no client_order_id has two broker orders, and the shares sold per symbol never
  exceed the shares bought (plus what the world itself sold short);
- `stops_sold_within_two_fault_free_runs`: every long position below a stop of one of its open trades had a sell
  within 2 fault-free runs of the cross (runs with faults, crashes or overlap do not count);
- `no_crossed_stop_left_silently`: in every run whose sweep completed (not raced by another run, not killed), a
  symbol with an open trade at or below its stop when the sweep started got a close sent at the broker, or is
  named with its reason in the sweep's result (failures, split suspects, waiting for the open, refused, unusable
  or missing quotes) —
  faults or not: failures never go silent;
- `closes_wait_for_confirmed_cancels`: in a fault-free run no close is refused for held quantity (403): the
  pipeline sizes a close to the broker's book and sends it only after every cancel of what holds the shares is
  confirmed (`pending_cancel` still holds them);
- `every_divergence_reported` (checked at the end of each run): a DB open quantity that differs from the broker's
  and was not repaired shows up as an unclean reconciliation that run;
- `no_trade_left_pending`: no entry stays `pending_open`.
It asserts nothing about trades the broker no longer shows: whether such a trade is closed or kept open as
"unconfirmed" is the reconciliation's policy, not this model's.

How it is run (profiles defined in this module, applied to this test only):
- default, `tp-model-ci`: derandomized (`derandomize=True`: the seed is a hash of the machine's source, so CI
  runs the same sequences every time until the machine changes), `TP_MODEL_EXAMPLES` (default 12) examples of
  up to `TP_MODEL_STEPS` (default 25) steps: about 25 s on an idle 2-core machine (65 s with four other test
  runs beside it), plus ~10 s for the regression plays below. It first replays the examples stored in
  `trading_pipeline_tests/.hypothesis-examples` (committed to git) through a `ReadOnlyDatabase`. Hypothesis's
  `settings` refuses `derandomize=True` and a `database` in one call (derandomize implies database=None: a
  writable database makes a run depend on what earlier runs saved); read-only, the stored examples are part of
  the commit, so the run stays a function of the tree (the database is set on a child of the derandomized
  settings, which hypothesis allows and its engine honours). Read-only also means a CI run never deletes a
  stored example that passes, nor saves a new one.
  `PYTHONPATH=. .venv/bin/python -m pytest -q trading_pipeline_tests/reliability/test_stop_loss_model.py`
- fresh seeds, `tp-model-random`: `TP_MODEL_SEED=random` (a new random seed each run); with it,
  `--hypothesis-seed=N` replays seed N (the derandomized profile ignores that option: derandomize wins; and
  hypothesis skips the database when a seed is forced). `TP_MODEL_SEED=N` runs seed N with the stored examples
  replayed first. Twenty fresh seeds in a row:
  `for i in $(seq 20); do TP_MODEL_SEED=random PYTHONPATH=. .venv/bin/python -m pytest -q -p no:cacheprovider
  --hypothesis-seed=$RANDOM$RANDOM -k "not regression" trading_pipeline_tests/reliability/test_stop_loss_model.py
  || break; done`
- long: `TP_MODEL_SEED=random TP_MODEL_EXAMPLES=300 TP_MODEL_STEPS=60 PYTHONPATH=. .venv/bin/python -m pytest -q
  -p no:cacheprovider -k "not regression" trading_pipeline_tests/reliability/test_stop_loss_model.py` (an hour
  or more here; its first run found a false 403 in this machine, fixed since: fractional outside orders).
- recording a counterexample: `TP_MODEL_RECORD=/tmp/model-examples` (with any of the above) saves the shrunk
  failing example there (the stored folder stays read-only); once the bug is fixed, `cp -rn
  /tmp/model-examples/. trading_pipeline_tests/.hypothesis-examples/` and commit it: CI replays it from then on.
  The stored examples are filed under a digest of the machine's source, so editing `StopLossModel` orphans them
  (they are then silently not replayed): re-record after such an edit. None is stored yet: see below.

What catches the protection bugs (each planted once in the source and seen to fail): the plain tests at the end
(`test_regression_*`) replay short sequences of the machine's own rules with every invariant after every step,
and survive edits of the machine. They are written by hand: at CI size the derandomized draw does not reach
these bugs, and fresh seeds did not either in 60 examples × 25 steps (oversell, short), 150 × 25 and 300 × 8
(pending cancel, silent skip) — each needs 3–4 rules on one symbol in order, rare among 13 rules. Planted:
- close sent for the trade's quantity before reducing it to the broker's → `closes_wait_for_confirmed_cancels`
  (refused twice for held quantity), then `stops_sold_within_two_fault_free_runs`;
- `BrokerBook.held` without its sign → `never_deepened_a_short`, `no_order_took_effect_twice`;
- `free_quantity` taking `pending_cancel` for cancelled → `closes_wait_for_confirmed_cancels`;
- the sweep skipping symbols with any failure (here the open-orders listing down) → `no_crossed_stop_left_silently`.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import defaultdict
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, MultiplexedDatabase, ReadOnlyDatabase
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from trading_pipeline.broker.base import BrokerError, OrderRejected, OrderRequest
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.domain.ids import parse_client_order_id
from trading_pipeline.domain.refusals import QUANTITY_WORDS as HELD_QTY_REFUSALS
from trading_pipeline.domain.strategy import price_level
from trading_pipeline.domain.types import OrderAction, PositionSide, TradeStatus
from trading_pipeline.sim.account import SimOrder
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
SEED = os.environ.get("TP_MODEL_SEED", "derandomized")
RECORD = os.environ.get("TP_MODEL_RECORD")
STORED_EXAMPLES = Path(__file__).resolve().parents[1] / ".hypothesis-examples"
SYMBOLS = 6
# Routes a run calls (the clock is not: the model's runs take the time from the sim).
ROUTES = [
    "GET /v2/positions",
    "GET /v2/positions/{symbol}",
    "GET /v2/orders",
    "GET /v2/orders:by_client_order_id",
    "GET /v2/orders/{order_id}",
    "DELETE /v2/orders/{order_id}",
    "POST /v2/orders",
    "GET /v2/stocks/quotes/latest",
]
# A sale cannot happen without these: a run with a fault on them does not count toward the 2-run limit. Every other
# route has a fallback on the close path (positions one by one, the listing looked up again after a 403, leftovers
# retried next run): the design says their outage fails into a check and an alert, never into a skipped close.
CRITICAL_ROUTES = frozenset(
    {"POST /v2/orders", "GET /v2/stocks/quotes/latest", "GET /v2/orders/{order_id}", "DELETE /v2/orders/{order_id}"}
)
FAST = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_cap=0.005, max_retry_after=0.01)
MAX_RUNS_TO_SELL = 2
FAULTS = ["500", "503", "429", "timeout"]


class Crash(Exception):
    """A run killed between its claim and its record (the DB keeps the `closing` row)."""


class RefusalRecorder:
    """The pipeline's broker; remembers every close the broker refused for quantity held by orders."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.held_refusals: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def submit_order(self, request: OrderRequest, **options: Any) -> Any:
        try:
            return self._inner.submit_order(request, **options)
        except OrderRejected as exc:
            held = any(text in exc.message.lower() for text in HELD_QTY_REFUSALS)
            if held and is_close(request.client_order_id or ""):
                self.held_refusals.append(f"{request.symbol} {request.qty}: {exc.message}")
            raise


def is_close(client_order_id: str) -> bool:
    parsed = parse_client_order_id(client_order_id)
    return parsed is not None and parsed[1] is OrderAction.CLOSE


class StopLossModel(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="tp-model-")
        self.db_url = f"sqlite:///{Path(self.folder.name) / 'model.db'}"
        self.db = Database(self.db_url)
        upgrade(self.db)
        self.sim = SimBroker(seed=5, n_symbols=60, start=SESSION_START, realtime=False).start()
        self.broker = RefusalRecorder(make_broker(self.sim, timeout=1.0, retry=FAST, fill_wait_seconds=0.0))
        self.symbols = tradable_symbols(self.sim.market, SYMBOLS)
        self.bought: dict[str, Decimal] = defaultdict(Decimal)
        self.shorted_outside: dict[str, Decimal] = defaultdict(Decimal)
        self.crossed_for: dict[str, int] = {}  # symbol → fault-free runs since its position was seen beyond stop
        self.refused_in_clean_runs: list[str] = []
        self.silent: list[str] = []  # crossed stops a completed sweep neither sold nor named
        self.faulty = False  # a fault, crash or overlap since the last run: its refusals are not judged
        self.critical_fault = False  # ... one a sale cannot do without: the run is not counted toward the limit
        self.runs = 0

    def teardown(self) -> None:
        if hasattr(self, "sim"):
            self.sim.stop()
            self.db.dispose()
            self.folder.cleanup()

    # ---- the world ----------------------------------------------------------------------------------

    def open_sell_orders(self, symbol: str) -> list[SimOrder]:
        book = self.sim.market.book
        return [o for o in book.orders.values() if o.symbol == symbol and o.side == "sell" and o.is_open]

    @rule(index=st.integers(0, SYMBOLS - 1), qty=st.integers(1, 40))
    def open_position(self, index: int, qty: int) -> None:
        symbol = self.symbols[index]
        if not self.sim.market.session_open or self.open_sell_orders(symbol):
            return  # not drawn: a buy that waits for the open, or one Alpaca rejects as a potential wash trade
        position = self.sim.market.book.positions.get(symbol)
        if position is not None and position.qty < 0:
            return  # not drawn: the world's short is not the pipeline's to cover
        order = self.sim.market.submit_order(
            {"symbol": symbol, "qty": str(qty), "side": "buy", "type": "market", "time_in_force": "day"}
        )
        if order.status == "partially_filled":  # the model takes what filled and cancels the rest
            order = self.sim.market.cancel_order(order.id)
            self.wait_for_cancel(order)
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

    def wait_for_cancel(self, order: SimOrder) -> None:
        """A person refreshing the dashboard until the cancel is confirmed (reads end `pending_cancel`)."""
        book = self.sim.market.book
        with self.sim.market.lock:
            for _ in range(book.cancel_delay_lookups + 2):
                if order.status != "pending_cancel":
                    break
                book.observe(order)

    def free_shares(self, symbol: str, needed: Decimal) -> None:
        """Cancel (and wait for) the orders holding `symbol`'s shares, oldest first, until `needed` are free."""
        book = self.sim.market.book
        for order in self.open_sell_orders(symbol):
            if book.qty_available(symbol) >= needed:
                return
            if not book.commits_shares(order):
                continue
            if order.status != "pending_cancel":
                self.sim.market.cancel_order(order.id)
            self.wait_for_cancel(order)

    def held_long(self) -> list[str]:
        """Symbols the broker holds long: what the world's actions on positions pick from (`index` modulo their
        number), so that a drawn step acts on a position instead of missing it."""
        positions = self.sim.market.book.positions
        return [s for s in self.symbols if s in positions and positions[s].qty > 0]

    def orphaned(self) -> list[str]:
        """Symbols with an open trade in the DB and no position at the broker (after a drift to 0)."""
        ours = {t.symbol for t in trades_repo.open_trades(self.db)}
        return [s for s in self.symbols if s in ours and s not in self.sim.market.book.positions]

    @rule(index=st.integers(0, SYMBOLS - 1), pct=st.sampled_from([-25, -12, -5, -2, 2, 5, 12]))
    def move_price(self, index: int, pct: int) -> None:
        """A gap in a held symbol (any symbol while none is held)."""
        candidates = self.held_long() or self.symbols
        self.sim.market.gap(candidates[index % len(candidates)], pct)

    @precondition(lambda self: bool(self.held_long()))
    @rule(index=st.integers(0, SYMBOLS - 1), keep=st.sampled_from([Decimal("0.5"), Decimal("0.8"), Decimal(0)]))
    def drift(self, index: int, keep: Decimal) -> None:
        """Shares gone at the broker behind the pipeline's back: sold by hand (keep 0) or transferred out."""
        held = self.held_long()
        symbol = held[index % len(held)]
        position = self.sim.market.book.positions[symbol]
        if position.qty <= 1:
            return
        left = (position.qty * keep).to_integral_value()
        self.free_shares(symbol, position.qty - left)
        if left <= 0:
            if self.sim.market.touch(symbol) is None:
                return  # not drawn: Alpaca refuses to close a position in a symbol with no market
            self.sim.market.close_position(symbol)
        else:
            self.sim.market.drift_position(symbol, left)

    @precondition(lambda self: bool(self.held_long()))
    @rule(index=st.integers(0, SYMBOLS - 1), part=st.sampled_from([Decimal(1), Decimal("0.5")]))
    def outside_order(self, index: int, part: Decimal) -> None:
        """A GTC sell limit far above the market placed in the web app: it holds the shares a close needs."""
        held = self.held_long()
        symbol = held[index % len(held)]
        # Whole shares, rounded down: a partial fill can leave a fractional position, and more than is free is a 403.
        qty = (self.sim.market.book.qty_available(symbol) * part).to_integral_value(rounding=ROUND_DOWN)
        if qty <= 0:
            return  # not drawn: Alpaca refuses a sell of shares already held for orders (403)
        limit = (self.sim.market.last_price(symbol) * 3).quantize(Decimal("0.01"))
        self.sim.market.submit_order(
            {
                "symbol": symbol,
                "qty": str(qty),
                "side": "sell",
                "type": "limit",
                "limit_price": str(limit),
                "time_in_force": "gtc",
            }
        )

    @precondition(lambda self: bool(self.orphaned()))
    @rule(index=st.integers(0, SYMBOLS - 1), qty=st.integers(1, 20))
    def outside_short(self, index: int, qty: int) -> None:
        """Another script sells short a symbol the account holds none of while the pipeline's trade is open."""
        orphaned = self.orphaned()
        symbol = orphaned[index % len(orphaned)]
        if not self.sim.market.session_open or any(
            o.symbol == symbol and o.is_open for o in self.sim.market.book.orders.values()
        ):
            return  # not drawn: Alpaca does not flip a position in one order, nor short against open orders
        order = self.sim.market.submit_order(
            {"symbol": symbol, "qty": str(qty), "side": "sell", "type": "market", "time_in_force": "day"}
        )
        if order.status == "partially_filled":
            order = self.sim.market.cancel_order(order.id)
            self.wait_for_cancel(order)
        self.shorted_outside[symbol] += order.filled_qty

    @rule(route=st.sampled_from(ROUTES), kind=st.sampled_from(FAULTS), count=st.integers(1, 4))
    def fault(self, route: str, kind: str, count: int) -> None:
        self.sim.faults.configure(timeout_seconds=1.5, retry_after_seconds=0)
        self.sim.faults.fail_next(kind, count=count, route=route)
        self.faulty = True
        self.critical_fault = self.critical_fault or route in CRITICAL_ROUTES

    @rule(on=st.booleans())
    def partial_fills(self, on: bool) -> None:
        self.sim.market.configure_partial_fills(rate=0.5 if on else 0.0, fraction=Decimal("0.5"))

    @rule(reads=st.sampled_from([0, 2, 4]))
    def slow_cancels(self, reads: int) -> None:
        """A cancel stays `pending_cancel`, still holding its shares, for the next `reads` reads of the order."""
        with self.sim.market.lock:
            self.sim.market.book.cancel_delay_lookups = reads

    # ---- the pipeline -------------------------------------------------------------------------------

    def stop_loss_run(
        self, db: Database | None = None, *, positions_step: bool = True, judge: bool = True
    ) -> Reconciliation | None:
        """The stop-loss job's work: the positions step (never failing on the broker), then the sweep. Without
        the positions step (it failed before its repair): the sweep alone, sized against the broker by itself.
        `judge`: hold the sweep to `no_crossed_stop_left_silently` (not when another run races it)."""
        db = db or self.db
        if not positions_step:
            self.sweep(db, judge=judge)
            return None
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
        self.sweep(db, judge=judge)
        return result

    def sweep(self, db: Database, *, judge: bool) -> None:
        crossed = self.below_stop(db)
        before = set(self.sim.market.book.orders)
        try:
            swept = run_stop_loss_sweep(
                db, self.broker, run_id=f"model-{self.runs}", now=self.sim.market.now, max_quote_age=None
            )
        except BrokerError:  # a quote outage: nothing judged, and the sweep itself failed loudly
            return
        if not judge:
            return
        sold = {
            o.symbol
            for o in self.sim.market.book.orders.values()
            if o.id not in before and o.side == "sell" and is_close(o.client_order_id)
        }
        named = {
            *swept.failures,
            *swept.split_suspects,
            *swept.waiting_for_open,
            *swept.refused,
            *swept.unusable_quotes,
            *swept.missing_quotes,
        }
        for symbol in sorted(crossed - sold - named):
            self.silent.append(f"{symbol}: below its stop, no sell sent and no reason given (run {self.runs})")

    def below_stop(self, db: Database) -> set[str]:
        """Symbols with an open trade whose stop the bid is at or below: the sweep must act on each, or say why."""
        crossed = set()
        for trade in trades_repo.open_trades(db):
            quote = self.sim.market.quote(trade.symbol)
            if quote is not None and trade.stop_loss is not None and quote.bid <= trade.stop_loss:
                crossed.add(trade.symbol)
        return crossed

    def after_run(self, reconciliation: Reconciliation | None) -> None:
        self.runs += 1
        self.sim.faults.clear()  # a burst lasts one run: what it did not meet is dropped, not left for later
        faulty, self.faulty = self.faulty, False
        critical, self.critical_fault = self.critical_fault, False
        refused, self.broker.held_refusals = self.broker.held_refusals, []
        if not faulty:
            self.refused_in_clean_runs.extend(refused)
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
            elif not critical:
                self.crossed_for[symbol] = self.crossed_for.get(symbol, 0) + 1

    def check_divergence_reported(self, reconciliation: Reconciliation | None) -> None:
        """The `every_divergence_reported` invariant, judged on the run's own reconciliation."""
        if reconciliation is None:
            return  # the positions could not be read: reported as unavailable by the step itself
        # A symbol with a close in flight is the leftover resolution's, not the reconciliation's: skipped by it when
        # it ran (even if the sweep after it settled the close), or still closing now.
        closing = set(reconciliation.closing_symbols) | {t.symbol for t in trades_repo.closing_trades(self.db)}
        for symbol in set(self.symbols) - closing:
            ours = sum((t.qty for t in trades_repo.open_trades(self.db) if t.symbol == symbol), Decimal(0))
            position = self.sim.market.book.positions.get(symbol)
            theirs = position.qty if position is not None else Decimal(0)
            if ours != theirs and not reconciliation.repaired.get(symbol):
                assert not reconciliation.clean, f"{symbol}: DB {ours}, broker {theirs}, reconciliation clean"

    @rule(positions_step=st.booleans())
    def run(self, positions_step: bool) -> None:
        self.after_run(self.stop_loss_run(positions_step=positions_step))
        self.sim.market.advance(timedelta(minutes=2))

    @rule()
    def overlapping_runs(self) -> None:
        """Two runs at once (a schedule tick and a sensor request): the claim lets one of them close each trade."""
        outcomes: list[Reconciliation | None] = []
        engines = [Database(self.db_url) for _ in range(2)]  # each run its own engine, as two processes would

        def one(db: Database) -> None:
            outcomes.append(self.stop_loss_run(db, judge=False))

        threads = [threading.Thread(target=one, args=(db,)) for db in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for db in engines:
            db.dispose()
        self.faulty = self.critical_fault = True  # two runs racing: judged by the invariants, not counted
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
        self.broker.held_refusals = []  # a killed run is not judged on its refusals
        self.sim.faults.clear()
        self.faulty = self.critical_fault = True  # the crashed run does not count toward the 2-run limit
        self.sim.market.advance(timedelta(minutes=2))

    # ---- the invariants -----------------------------------------------------------------------------

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def never_deepened_a_short(self) -> None:
        for symbol, position in self.sim.market.book.positions.items():
            floor = -self.shorted_outside[symbol]
            assert position.qty >= floor, (
                f"{symbol} at {position.qty} (the world's own short: {floor}): the pipeline sold more than was held"
            )

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def no_order_took_effect_twice(self) -> None:
        orders = list(self.sim.market.book.orders.values())
        ids = [o.client_order_id for o in orders]
        assert len(ids) == len(set(ids)), "a client_order_id was used twice"
        sold: dict[str, Decimal] = defaultdict(Decimal)
        for order in orders:
            if order.side == "sell":
                sold[order.symbol] += order.filled_qty
        for symbol, qty in sold.items():
            allowed = self.bought[symbol] + self.shorted_outside[symbol]
            assert qty <= allowed, f"{symbol}: sold {qty}, bought {self.bought[symbol]} (+ outside short)"

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def stops_sold_within_two_fault_free_runs(self) -> None:
        late = {s: n for s, n in self.crossed_for.items() if n > MAX_RUNS_TO_SELL}
        assert not late, f"positions beyond their stop for more than {MAX_RUNS_TO_SELL} fault-free runs: {late}"

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def no_crossed_stop_left_silently(self) -> None:
        assert not self.silent, f"stops skipped without a word: {self.silent}"

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def closes_wait_for_confirmed_cancels(self) -> None:
        assert not self.refused_in_clean_runs, f"closes refused for held shares: {self.refused_in_clean_runs}"

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def no_trade_left_pending(self) -> None:
        for trade in trades_repo.trades_with_status(self.db, TradeStatus.PENDING_OPEN):
            raise AssertionError(f"pending entry left: {trade.symbol}")


def model_settings() -> settings:
    """The profile this run uses (see the module docstring): derandomized by default, `TP_MODEL_SEED=random`
    for fresh seeds, `TP_MODEL_SEED=<int>` for one seed."""
    base = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    stored = ReadOnlyDatabase(DirectoryBasedExampleDatabase(STORED_EXAMPLES))
    database = stored if not RECORD else MultiplexedDatabase(stored, DirectoryBasedExampleDatabase(RECORD))
    settings.register_profile("tp-model-ci", settings(base, derandomize=True), database=database)
    settings.register_profile("tp-model-random", base, derandomize=False, database=database)
    return settings.get_profile("tp-model-ci" if SEED == "derandomized" else "tp-model-random")


if SEED not in ("derandomized", "random"):
    StopLossModel = seed(int(SEED))(StopLossModel)  # type: ignore[misc]
StopLossModel.TestCase.settings = model_settings()
test_stop_loss_model = StopLossModel.TestCase


# ---- the sequences that catch the protection bugs, kept as plain tests -----------------------------------------
# Each is a short sequence of the machine's own rules, replayed with every invariant checked after every step (as
# hypothesis does). Unlike the stored examples they survive edits of the machine. The bug each one caught when
# planted is named; on healthy code each passes.

INVARIANTS = [
    name for name in dir(StopLossModel) if hasattr(getattr(StopLossModel, name), "hypothesis_stateful_invariant")
]


def play(*steps: tuple[str, dict[str, Any]]) -> None:
    machine = StopLossModel()
    try:
        machine.start()
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
            for invariant_name in INVARIANTS:
                getattr(machine, invariant_name)()
    finally:
        machine.teardown()


def test_regression_a_close_is_sized_to_what_the_broker_holds_after_a_transfer() -> None:
    """Planted: `close_position` sends `trade.qty` before reducing it to the broker's 5 → refused twice for held
    quantity (`closes_wait_for_confirmed_cancels`), and never sold (`stops_sold_within_two_fault_free_runs`)."""
    play(
        ("open_position", {"index": 0, "qty": 10}),
        ("drift", {"index": 0, "keep": Decimal("0.5")}),
        ("move_price", {"index": 0, "pct": -12}),
        ("run", {"positions_step": False}),
        ("run", {"positions_step": False}),
        ("run", {"positions_step": False}),
    )


def test_regression_a_short_at_the_broker_is_never_sold_into() -> None:
    """Planted: `BrokerBook.held` without its sign → the world's short of 5 looks sellable and the sweep sells 5
    more (`never_deepened_a_short`, `no_order_took_effect_twice`)."""
    play(
        ("open_position", {"index": 0, "qty": 10}),
        ("drift", {"index": 0, "keep": Decimal(0)}),
        ("outside_short", {"index": 0, "qty": 5}),
        ("move_price", {"index": 0, "pct": -12}),
        ("run", {"positions_step": False}),
    )


def test_regression_a_close_waits_until_a_pending_cancel_is_confirmed() -> None:
    """Planted: `free_quantity` takes `pending_cancel` for cancelled → the close is sent while the outside order
    still holds the shares and is refused (`closes_wait_for_confirmed_cancels`)."""
    play(
        ("open_position", {"index": 0, "qty": 10}),
        ("outside_order", {"index": 0, "part": Decimal(1)}),
        ("slow_cancels", {"reads": 2}),
        ("move_price", {"index": 0, "pct": -12}),
        ("run", {"positions_step": True}),
    )


def test_regression_a_listing_outage_never_skips_a_stop_silently() -> None:
    """Planted: the sweep skips symbols with any failure (here the open-orders listing down) → the crossed stop is
    neither sold nor named (`no_crossed_stop_left_silently`)."""
    play(
        ("open_position", {"index": 0, "qty": 10}),
        ("fault", {"route": "GET /v2/orders", "kind": "500", "count": 3}),
        ("move_price", {"index": 0, "pct": -12}),
        ("run", {"positions_step": False}),
    )


def test_regression_a_close_settled_by_the_sweep_after_the_reconciliation_skipped_it() -> None:
    """Found on healthy code by the first version of this machine: the reconciliation skips a symbol with a close
    in flight, and the sweep after it settles that close; the divergence check must not then call it unreported."""
    play(
        ("open_position", {"index": 1, "qty": 19}),
        ("open_position", {"index": 1, "qty": 23}),
        ("crash_between_claim_and_record", {}),
        ("move_price", {"index": 0, "pct": -25}),
        ("partial_fills", {"on": True}),
        ("crash_between_claim_and_record", {}),
        ("crash_between_claim_and_record", {}),
        ("open_position", {"index": 1, "qty": 28}),
        ("drift", {"index": 1, "keep": Decimal(0)}),
        ("overlapping_runs", {}),
    )


def test_the_default_profile_is_derandomized_and_replays_the_stored_examples_read_only() -> None:
    """What CI runs must not depend on a seed drawn at run time nor on what an earlier run saved."""
    if SEED != "derandomized" or RECORD:
        pytest.skip(f"checks the default profile; this run uses TP_MODEL_SEED={SEED}, TP_MODEL_RECORD={RECORD}")
    chosen = StopLossModel.TestCase.settings
    assert chosen.derandomize
    assert isinstance(chosen.database, ReadOnlyDatabase)
    assert chosen.database == ReadOnlyDatabase(DirectoryBasedExampleDatabase(STORED_EXAMPLES))
    assert STORED_EXAMPLES.is_dir()
