"""Entries: the strategy's picks, within risk limits, opened as market BUYs with stop/take-profit levels.

Guards first — the session, the kill switch and the daily-loss breaker (halted ⇒ reduce-only: the strategy is
not even asked), the universe, the account — then the strategy is asked (steps/strategy_run.py), its
intents checked, sized by the risk limits (domain/risk.py) and opened. A strategy that raises or returns an
invalid intent fails this step with nothing traded; the stop-loss job never loads it.

Order of operations per entry: insert the trade as `pending_open` with its client_order_id (tx) →
submit (no tx) → record the fill (tx). A crash after the POST leaves a pending row that the positions
step resolves by client_order_id — never an untracked position at the broker. With protective orders on,
the entry is a bracket order: the broker itself holds the stop and the take-profit from the moment it fills.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from trading_pipeline.broker.base import (
    Broker,
    BrokerError,
    BrokerOrder,
    OrderClass,
    OrderRejected,
    OrderRequest,
    RateBudgetExhausted,
    TimeInForce,
)
from trading_pipeline.domain.calendar import NEW_YORK
from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.risk import RiskLimits, SizedEntry, daily_loss_breached, size_entries
from trading_pipeline.domain.strategy import EntryStrategy, StrategyFailed
from trading_pipeline.domain.types import OrderAction, OrderSide, Quote, TradeStatus
from trading_pipeline.steps.clock import ClockReading
from trading_pipeline.steps.orders import is_dead, order_fields
from trading_pipeline.steps.pnl import pnl_since
from trading_pipeline.steps.strategy_run import StrategyAnswer, ask_strategy, gather_inputs, open_notional
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import current_trading_state, set_trading_state
from trading_pipeline.store.database import Database

RISK_ACTOR = "risk-limits"


@dataclass
class EntriesResult:
    trading_date: date
    decision_run_id: str | None = None
    skipped_reason: str | None = None
    candidates: int = 0
    proposed: int = 0
    sized: int = 0
    orders_submitted: int = 0
    opened: int = 0
    pending: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    capped: dict[str, str] = field(default_factory=dict)
    strategy_rejected: dict[str, str] = field(default_factory=dict)
    unusable_quotes: dict[str, str] = field(default_factory=dict)
    strategy_error: str | None = None  # the strategy raised or returned invalid intents: nothing was traded
    opened_trades: list[dict[str, Any]] = field(default_factory=list)
    buying_power: Decimal | None = None
    halted_by_daily_loss: bool = False


def open_entries(
    db: Database,
    broker: Broker,
    *,
    strategy: EntryStrategy,
    limits: RiskLimits,
    trading_date: date,
    run_id: str | None,
    now: datetime | None = None,
    protective_orders: bool = False,
    day_start: datetime | None = None,
    market: ClockReading | None = None,
    strategy_meta: dict[str, Any] | None = None,
) -> EntriesResult:
    """`market`: this run's clock reading; entries are opened only inside a session both the broker's clock
    and the exchange calendar agree on (None: the caller has checked, e.g. a test driving the step).
    `strategy_meta`: how the strategy was selected (name, source, params), recorded with the run.

    Raises StrategyFailed — after recording it on the decision run — when the strategy raised or returned an
    invalid intent; nothing is sent then."""
    run = EntryRun(db, broker, strategy, limits, trading_date, run_id, now or datetime.now(UTC), protective_orders)
    run.market = market
    run.meta["strategy"] = strategy_meta or {"name": strategy.name}
    decision_run = runs_repo.start_decision_run(db, kind="entries", run_id=run_id, strategy=strategy.name)
    run.result.decision_run_id = str(decision_run)
    run.decision_run = decision_run
    try:
        run.execute(day_start)
    except StrategyFailed as exc:
        run.result.strategy_error = str(exc)
        run.meta["strategy_error"] = {"error": str(exc), "traceback": exc.details}
        raise
    finally:
        run.meta["result"] = run.result
        runs_repo.finish_decision_run(db, decision_run, run.meta)
    return run.result


class EntryRun:
    """One entries step: guards first (kill switch, daily loss, universe, account), then screen, size, open."""

    def __init__(
        self,
        db: Database,
        broker: Broker,
        strategy: EntryStrategy,
        limits: RiskLimits,
        trading_date: date,
        run_id: str | None,
        now: datetime,
        protective_orders: bool,
    ) -> None:
        self.db, self.broker, self.strategy, self.limits = db, broker, strategy, limits
        self.trading_date, self.run_id, self.now, self.protective = trading_date, run_id, now, protective_orders
        self.result = EntriesResult(trading_date=trading_date)
        self.decision_run: uuid.UUID | None = None
        self.market: ClockReading | None = None
        # Set when the process's rate budget refused an entry: the rest are skipped, not each made to wait.
        self.out_of_budget: str | None = None
        self.meta: dict[str, Any] = {
            "trading_date": trading_date,
            "limits": limits,
            "protective_orders": protective_orders,
        }

    def execute(self, day_start: datetime | None) -> None:
        if self.outside_session() or self.refused(day_start):
            return
        snapshot = runs_repo.get_universe_snapshot(self.db, self.trading_date)
        if snapshot is None or not snapshot.symbols:
            self.result.skipped_reason = (
                f"no universe sample stored for {self.trading_date}: materialize `universe` first"
            )
            return
        account = self.broker.account()
        self.meta["account"] = account
        self.result.buying_power = account.buying_power
        if not account.can_trade:
            self.result.skipped_reason = (
                f"account cannot trade (status {account.status}, trading_blocked {account.trading_blocked})"
            )
            return
        if account.buying_power <= 0:
            self.result.skipped_reason = f"no buying power ({account.buying_power})"
            return
        held = trades_repo.open_trades(self.db) + trades_repo.trades_with_status(self.db, TradeStatus.PENDING_OPEN)
        answer = StrategyAnswer()
        inputs = gather_inputs(
            self.db,
            self.broker,
            strategy=self.strategy,
            trading_date=self.trading_date,
            run_id=self.run_id,
            now=self.now,
            symbols=list(snapshot.symbols),
            account=account,
            held=held,
            answer=answer,
        )
        self.result.unusable_quotes = answer.unusable_quotes
        self.result.candidates = len(inputs.quotes)
        ask_strategy(self.strategy, inputs, answer)  # StrategyFailed: nothing below runs, nothing is sent
        self.result.proposed, self.result.strategy_rejected = len(answer.intents), answer.rejected
        sizing = size_entries(
            answer.intents,
            limits=self.limits,
            buying_power=account.buying_power,
            open_symbols=[t.symbol for t in held],
            open_notional=open_notional(held),
            entered_today=trades_repo.entered_notional_since(self.db, _midnight(self.trading_date)),
        )
        self.result.sized, self.result.dropped, self.result.capped = len(sizing.entries), sizing.dropped, sizing.capped
        self.meta["screen_rejected"] = answer.rejected
        self.meta["intents"] = [p.intent for p in answer.intents]
        orders: list[BrokerOrder] = []
        self.meta["orders"] = orders
        for entry in sizing.entries:
            if self.out_of_budget is not None:
                self.result.failures[entry.intent.symbol] = f"entry skipped: {self.out_of_budget}"
                continue
            order = self.open_one(entry)
            if order is not None:
                orders.append(order)

    def outside_session(self) -> bool:
        """No new risk outside a session: not when the broker's clock says closed, not on a day the exchange
        calendar has no session (or after a half day's early close), and not when the two disagree or the
        broker's clock could not be read (a guessed clock is good enough to protect, never to open)."""
        market = self.market
        if market is None:
            return False
        self.meta["clock"] = market.metadata()
        reason = None
        if market.problem:
            reason = f"no entries on the calendar's guess: {market.problem}"
        elif not market.clock.is_open:
            reason = f"market closed by the broker's clock ({market.calendar_reason})"
        elif not market.calendar_in_session:
            reason = f"the broker's clock says open but the exchange calendar says: {market.calendar_reason}"
        elif market.clock.timestamp.astimezone(NEW_YORK).date() != self.trading_date:
            reason = f"the broker's date is not {self.trading_date}: entries only for today's session"
        if reason:
            self.result.skipped_reason = reason
        return reason is not None

    def refused(self, day_start: datetime | None) -> bool:
        """The kill switch, and the daily-loss limit (whose breach turns the kill switch on)."""
        halt = current_trading_state(self.db)
        self.meta["kill_switch"] = halt
        if not halt.halted and day_start is not None:
            breached, pnl = enforce_daily_loss(self.db, self.limits, day_start)
            if breached:
                self.result.halted_by_daily_loss = True
                halt = current_trading_state(self.db)
            self.meta["pnl_today"] = pnl
        if halt.halted:  # the kill switch stops new risk; the stop-loss sweep keeps protecting what is open
            self.result.skipped_reason = (
                f"trading halted by {halt.actor}: {halt.reason} (`trading-pipeline resume` to lift)"
            )
        return halt.halted

    def entry_order(self, entry: SizedEntry, cid: str) -> OrderRequest:
        intent = entry.intent
        if not self.protective:
            return OrderRequest(symbol=intent.symbol, side=OrderSide.BUY, qty=entry.qty, client_order_id=cid)
        # GTC: the legs must outlive the day, since they protect the position while nothing else runs.
        return OrderRequest(
            symbol=intent.symbol,
            side=OrderSide.BUY,
            qty=entry.qty,
            client_order_id=cid,
            time_in_force=TimeInForce.GTC,
            order_class=OrderClass.BRACKET,
            take_profit_limit_price=intent.take_profit,
            stop_loss_stop_price=intent.stop_loss,
        )

    def open_one(self, entry: SizedEntry) -> BrokerOrder | None:
        db, intent, result = self.db, entry.intent, self.result
        trade_id = uuid.uuid4()
        cid = client_order_id(trade_id, OrderAction.OPEN)
        trade = trades_repo.insert_trade(
            db,
            trades_repo.NewTrade(
                id=trade_id,
                symbol=intent.symbol,
                side=intent.side,
                qty=entry.qty,
                entry_price=entry.price,
                entry_at=self.now,
                stop_loss=intent.stop_loss,
                take_profit=intent.take_profit,
                trailing_pct=intent.trailing_stop_pct,
                max_age_trading_days=intent.max_age_trading_days,
                strategy=self.strategy.name,
                decision_run_id=self.decision_run,
                status=TradeStatus.PENDING_OPEN,
                open_client_order_id=cid,
                protected=self.protective,
                protection_client_order_id=cid if self.protective else None,
            ),
        )
        try:
            order = self.broker.submit_order(self.entry_order(entry, cid))
        except RateBudgetExhausted as exc:
            # Refused before sending (closes and protection come first): no order exists, drop the pending row.
            trades_repo.cancel_pending_entry(db, trade.id, client_order_id=cid)
            self.out_of_budget = f"rate budget kept for closes and protection ({exc.message})"
            result.failures[intent.symbol] = f"entry skipped: {self.out_of_budget}"
            return None
        except OrderRejected as exc:
            trades_repo.cancel_pending_entry(db, trade.id, client_order_id=cid)
            result.failures[intent.symbol] = f"entry rejected by broker: {exc.message}"
            return None
        except BrokerError as exc:
            result.failures[intent.symbol] = f"entry submit unresolved, will reconcile by client_order_id: {exc}"
            return None
        result.orders_submitted += 1
        orders_repo.upsert_order(db, order_fields(order, trade.id))
        if order.is_filled and order.filled_avg_price is not None:
            trades_repo.mark_entry_filled(
                db,
                trade.id,
                client_order_id=cid,
                fill_price=order.filled_avg_price,
                filled_qty=order.filled_qty,
                filled_at=order.filled_at or datetime.now(UTC),
            )
            result.opened += 1
            result.opened_trades.append(
                {
                    "symbol": intent.symbol,
                    "qty": order.filled_qty,
                    "price": order.filled_avg_price,
                    "stop_loss": intent.stop_loss,
                    "take_profit": intent.take_profit,
                    "protected": self.protective,
                }
            )
        elif is_dead(order):
            trades_repo.cancel_pending_entry(db, trade.id, client_order_id=cid)
            result.failures[intent.symbol] = f"entry order {order.status}"
        else:
            result.pending += 1
        return order


def enforce_daily_loss(
    db: Database, limits: RiskLimits, day_start: datetime, marks: Mapping[str, Quote] | None = None
) -> tuple[bool, Decimal]:
    """Today's P&L (open trades marked at `marks` where given, else at their latest stored quote); on a breach
    of max_daily_loss, turn the kill switch on (recorded with who and why).

    Returns (breached now, P&L). Idempotent: an already halted system is not halted again."""
    pnl = pnl_since(db, day_start, marks).total
    if not daily_loss_breached(pnl, limits):
        return False, pnl
    if not current_trading_state(db).halted:
        set_trading_state(
            db,
            halted=True,
            actor=RISK_ACTOR,
            reason=f"daily loss {pnl:,.2f} breached the limit of {limits.max_daily_loss:,.2f}",
        )
    return True, pnl


def _midnight(day: date) -> datetime:
    """Where a trading date begins for `max_daily_notional`: midnight New York."""
    return datetime.combine(day, time(0), tzinfo=NEW_YORK)
