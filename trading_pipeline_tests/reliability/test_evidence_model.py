"""The stop-loss model (`test_stop_loss_model.py`) with the book changes of issue 24 drawn too: everything the
broker holds is protected; nothing is written off without evidence.

Its runs are the positions step as the `positions` asset does it — pending entries, protection, reconciliation
with repair, the corporate actions of symbols that vanished, and the outside-positions policy (`adopt`) — then
the sweep with the broker's clock (no market order while it says closed). Every rule and invariant of the base
model holds; these rules are added:
- `outside_buy(index, qty)`: a market buy in Alpaca's dashboard of a symbol the pipeline holds nothing of;
- `rename(index, published)`: a held symbol renamed at the broker (`Market.rename`: position, orders and quotes
  move to the new ticker), its corporate action published at once or only after the session;
- `listing_lies(kind)`: for the next run `GET /v2/positions` answers 200 with nothing, or another account's book;
- `refuse_exits(index)` / `allow_exits(index)`: the broker refuses orders in a held symbol (422 not tradable), or
  takes them again;
- `overnight()`: the clock goes past the close, one run happens there, then the clock goes to the next open.
And these invariants:
- `every_share_has_a_stop`: after each run that read the broker's true book, every long share the broker holds
  belongs to an open (or closing) trade — ours, re-linked after a rename, or adopted — except shares of the same
  quantity as one of our unconfirmed trades (possibly its shares under a new name: deliberately not adopted), and
  whole shares bought outside *beside* one of our trades in the same symbol (reported by the reconciliation as
  "broker holds more", not adopted yet: a known gap, found by this model);
- `no_write_off_without_evidence`: every trade closed as `manual` has a sell placed outside the pipeline that
  filled in its symbol after its entry (our own closes are recorded with their own reasons);
- `no_market_order_while_closed`: no close order is sent while the broker's clock says closed;
- `refused_exits_at_their_cadence`: an exit refused for a lasting reason is not sent again within 15 minutes.
The 2-run limit does not count runs while the market is closed, nor runs while an exit of the symbol is refused
(its stored refusal has not expired): the broker would not take the order, and the run says so instead.

Trailing stops moving the broker's stop leg are not drawn here: the base model's positions carry no bracket legs;
`assets/test_evidence.py::test_the_brokers_stop_follows_the_trailing_stop_with_one_live_leg` covers them through
the job. Runs like the base model (`TP_MODEL_SEED`, `TP_MODEL_EXAMPLES`, `TP_MODEL_STEPS`), e.g. the long profile:
`TP_MODEL_SEED=random TP_MODEL_EXAMPLES=300 TP_MODEL_STEPS=60 .venv/bin/python -m pytest -q -p no:cacheprovider
trading_pipeline_tests/reliability/test_evidence_model.py`.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import seed
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from trading_pipeline.broker.base import BrokerError, OrderRejected, OrderRequest
from trading_pipeline.domain.calendar import next_open_and_close
from trading_pipeline.domain.ids import parse_client_order_id
from trading_pipeline.domain.refusals import RETRY_LASTING_REFUSAL_AFTER, RefusalKind, classify_refusal
from trading_pipeline.domain.types import ExitReason, TradeStatus
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.steps.corporate_actions import apply_corporate_actions
from trading_pipeline.steps.outside_positions import ADOPT, handle_outside_positions
from trading_pipeline.steps.protection import protect_positions
from trading_pipeline.steps.reconcile import Reconciliation, reconcile_positions, resolve_pending_entries
from trading_pipeline.store import refusals_repository as refusals_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.reliability.test_stop_loss_model import SEED, StopLossModel, is_close, model_settings

pytestmark = pytest.mark.reliability

SYMBOLS = 6


class RefusalClock:
    """Wraps the model's broker: remembers when each close refused for a lasting reason was sent (sim time)."""

    def __init__(self, inner: Any, model: EvidenceModel) -> None:
        self._inner = inner
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def submit_order(self, request: OrderRequest, **options: Any) -> Any:
        try:
            return self._inner.submit_order(request, **options)
        except OrderRejected as exc:
            lasting = classify_refusal(exc.status, exc.code, exc.message, exc.details).kind is RefusalKind.LASTING
            if lasting and is_close(request.client_order_id or "") and self._model.judging:
                self._model.lasting_refusals.append((request.symbol, self._model.sim.market.now))
            raise


class EvidenceModel(StopLossModel):
    @initialize()
    def start(self) -> None:
        super().start()
        self.broker = RefusalClock(self.broker, self)
        self.outside_count = 0
        self.renames = 0
        self.listing_lied = False
        self.judging = True
        self.lasting_refusals: list[tuple[str, Any]] = []
        self.unprotected: list[str] = []
        self.sent_while_closed: list[str] = []

    # ---- the world --------------------------------------------------------------------------------------

    @rule(index=st.integers(0, SYMBOLS - 1), qty=st.integers(1, 15))
    def outside_buy(self, index: int, qty: int) -> None:
        symbol = self.symbols[index % len(self.symbols)]
        book = self.sim.market.book
        ours = {t.symbol for t in trades_repo.open_trades(self.db) + trades_repo.closing_trades(self.db)}
        if not self.sim.market.session_open or symbol in ours or symbol in book.positions or not self.tradable(symbol):
            return  # not drawn: an outside buy into our own position is drift, not an outside position
        if any(o.symbol == symbol and o.is_open for o in book.orders.values()):
            return  # not drawn: Alpaca rejects a buy against an open sell as a potential wash trade
        self.outside_count += 1
        order = self.sim.market.submit_order(
            {
                "symbol": symbol,
                "qty": str(qty),
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
                "client_order_id": f"dashboard-buy-{self.outside_count}",
            }
        )
        if order.status == "partially_filled":
            order = self.sim.market.cancel_order(order.id)
            self.wait_for_cancel(order)
        self.bought[symbol] += order.filled_qty

    @precondition(lambda self: bool(self.held_long()))
    @rule(index=st.integers(0, SYMBOLS - 1), published=st.booleans())
    def rename(self, index: int, published: bool) -> None:
        held = self.held_long()
        old = held[index % len(held)]
        self.renames += 1
        new = f"{old[:3]}RN{self.renames}"
        if self.sim.market.asset(new) is not None:
            return
        moved = self.sim.market.book.positions[old].qty
        self.sim.market.rename(old, new, publish_delay=timedelta(0) if published else timedelta(days=30))
        self.symbols[self.symbols.index(old)] = new
        self.bought[new] += moved  # the old symbol's fills stay on it at the broker, and so does its account
        self.crossed_for.pop(old, None)

    @rule(kind=st.sampled_from(["empty", "foreign"]))
    def listing_lies(self, kind: str) -> None:
        self.sim.faults.configure(positions_listing=kind)  # cleared after the next run, like every fault
        self.listing_lied = True

    @precondition(lambda self: bool(self.held_long()))
    @rule(index=st.integers(0, SYMBOLS - 1))
    def refuse_exits(self, index: int) -> None:
        held = self.held_long()
        self.sim.market.set_tradable(held[index % len(held)], False)

    @rule(index=st.integers(0, SYMBOLS - 1))
    def allow_exits(self, index: int) -> None:
        self.sim.market.set_tradable(self.symbols[index % len(self.symbols)], True)

    @rule()
    def overnight(self) -> None:
        if not self.sim.market.session_open:
            return
        _, close = next_open_and_close(self.sim.market.now)
        self.sim.market.advance_to(close + timedelta(minutes=30))
        self.after_run(self.stop_loss_run())
        next_open, _ = next_open_and_close(self.sim.market.now)
        self.sim.market.advance_to(next_open + timedelta(minutes=1))

    # The base model's world rules, not drawn on a symbol the broker does not trade (it would refuse them too).

    def tradable(self, symbol: str) -> bool:
        asset = self.sim.market.asset(symbol)
        return asset is not None and asset.tradable

    @rule(index=st.integers(0, SYMBOLS - 1), qty=st.integers(1, 40))
    def open_position(self, index: int, qty: int) -> None:
        if self.tradable(self.symbols[index]):
            super().open_position(index, qty)

    @precondition(lambda self: bool(self.held_long()))
    @rule(index=st.integers(0, SYMBOLS - 1), keep=st.sampled_from([Decimal("0.5"), Decimal("0.8"), Decimal(0)]))
    def drift(self, index: int, keep: Decimal) -> None:
        held = self.held_long()
        if self.tradable(held[index % len(held)]):
            super().drift(index, keep)

    @precondition(lambda self: bool(self.held_long()))
    @rule(index=st.integers(0, SYMBOLS - 1), part=st.sampled_from([Decimal(1), Decimal("0.5")]))
    def outside_order(self, index: int, part: Decimal) -> None:
        held = self.held_long()
        if self.tradable(held[index % len(held)]):
            super().outside_order(index, part)

    @precondition(lambda self: bool(self.orphaned()))
    @rule(index=st.integers(0, SYMBOLS - 1), qty=st.integers(1, 20))
    def outside_short(self, index: int, qty: int) -> None:
        orphaned = self.orphaned()
        if self.tradable(orphaned[index % len(orphaned)]):
            super().outside_short(index, qty)

    # ---- the pipeline -----------------------------------------------------------------------------------

    def stop_loss_run(
        self, db: Database | None = None, *, positions_step: bool = True, judge: bool = True
    ) -> Reconciliation | None:
        db = db or self.db
        self.judging = judge
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
            if result.unconfirmed and result.mass_disappearance is None:
                actions = apply_corporate_actions(
                    db, self.broker, today=now.date(), symbols=sorted(result.unconfirmed), run_id=None
                )
                if actions.renamed:
                    held = self.broker.positions()
                    result = reconcile_positions(db, self.broker, now=now, broker_positions=held, resolve_pending=False)
            handle_outside_positions(
                db,
                self.broker,
                result.broker_positions,
                result,
                policy=ADOPT,
                stop_loss_pct=Decimal(3),
                take_profit_pct=Decimal(8),
                now=now,
                run_id=None,
            )
        except BrokerError:
            result = None
        self.sweep(db, judge=judge)
        return result

    def sweep(self, db: Database, *, judge: bool) -> None:
        open_now = self.sim.market.session_open
        crossed = self.below_stop(db)
        before = set(self.sim.market.book.orders)
        try:
            swept = run_stop_loss_sweep(
                db,
                self.broker,
                run_id=f"model-{self.runs}",
                now=self.sim.market.now,
                max_quote_age=None,
                market_open=open_now,
                next_open=next_open_and_close(self.sim.market.now)[0],
            )
        except BrokerError:
            return
        if not open_now:
            sent = [
                o for o in self.sim.market.book.orders.values() if o.id not in before and is_close(o.client_order_id)
            ]
            self.sent_while_closed += [f"{o.symbol} {o.qty} ({o.client_order_id})" for o in sent]
            return
        if judge:
            self.judge_sweep(swept, before, crossed)

    def judge_sweep(self, swept: Any, before: set[str], crossed: set[str]) -> None:
        """The base model's `no_crossed_stop_left_silently`, for a sweep that already ran."""
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

    def after_run(self, reconciliation: Reconciliation | None) -> None:
        lied, self.listing_lied = self.listing_lied, False
        if lied:  # the listing answered nothing, or another book: nothing to hold its reconciliation to
            reconciliation = None
        closed = not self.sim.market.session_open
        refused_now = {
            symbol
            for symbol, refusal in refusals_repo.refusals(self.db).items()
            if refusal.retry_after > self.sim.market.now
        }
        untradable = {s for s in self.symbols if (asset := self.sim.market.asset(s)) is not None and not asset.tradable}
        if closed or refused_now or untradable:
            # A run the broker could not have sold in: not counted toward the 2-run limit for those symbols.
            keep = dict(self.crossed_for)
            super().after_run(reconciliation)
            for symbol in (set(self.symbols) if closed else refused_now | untradable) & set(keep):
                self.crossed_for[symbol] = keep[symbol]
            for symbol in (set(self.symbols) if closed else refused_now | untradable) - set(keep):
                self.crossed_for.pop(symbol, None)
        else:
            super().after_run(reconciliation)
        if reconciliation is not None and reconciliation.unavailable is None and not lied:
            self.check_every_share_has_a_stop(reconciliation)

    def check_every_share_has_a_stop(self, reconciliation: Reconciliation) -> None:
        doubt = set(reconciliation.unconfirmed_qty.values())
        protected: dict[str, Decimal] = {}
        for trade in trades_repo.open_trades(self.db) + trades_repo.closing_trades(self.db):
            protected[trade.symbol] = protected.get(trade.symbol, Decimal(0)) + trade.qty
        for symbol, position in self.sim.market.book.positions.items():
            if position.qty <= 0 or position.qty in doubt:
                continue
            if symbol in protected and position.qty - protected[symbol] >= 1:
                continue  # whole shares bought outside beside our own trade: reported, not adopted (a known gap)
            if protected.get(symbol, Decimal(0)) < position.qty:
                mine = protected.get(symbol)
                self.unprotected.append(f"{symbol}: the broker holds {position.qty}, trades {mine} (run {self.runs})")

    # ---- the invariants ---------------------------------------------------------------------------------

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def every_share_has_a_stop(self) -> None:
        assert not self.unprotected, f"shares the broker holds with no stop: {self.unprotected}"

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def no_write_off_without_evidence(self) -> None:
        orders = list(self.sim.market.book.orders.values())
        for trade in trades_repo.trades_with_status(self.db, TradeStatus.CLOSED):
            if trade.close_reason is not ExitReason.MANUAL:
                continue
            evidence = [
                o
                for o in orders
                if o.symbol == trade.symbol
                and o.side == "sell"
                and o.filled_qty > 0
                and parse_client_order_id(o.client_order_id) is None
                and (o.filled_at is None or o.filled_at >= trade.entry_at)
            ]
            assert evidence, f"{trade.symbol} {trade.id}: closed as manual with no sell filled at the broker"

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def no_market_order_while_closed(self) -> None:
        assert not self.sent_while_closed, f"closes sent while the market was closed: {self.sent_while_closed}"

    @precondition(lambda self: hasattr(self, "sim"))
    @invariant()
    def refused_exits_at_their_cadence(self) -> None:
        last: dict[str, Any] = {}
        for symbol, at in self.lasting_refusals:
            if symbol in last:
                assert at - last[symbol] >= RETRY_LASTING_REFUSAL_AFTER, (
                    f"{symbol}: a refused exit sent again {at - last[symbol]} after the last refusal"
                )
            last[symbol] = at


if SEED not in ("derandomized", "random"):
    EvidenceModel = seed(int(SEED))(EvidenceModel)  # type: ignore[misc]
EvidenceModel.TestCase.settings = model_settings()
test_evidence_model = EvidenceModel.TestCase
