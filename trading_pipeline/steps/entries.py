"""Entries: the strategy's picks, within risk limits, opened as market BUYs with stop/take-profit levels.

Order of operations per entry: insert the trade as `pending_open` with its client_order_id (tx) →
submit (no tx) → record the fill (tx). A crash after the POST leaves a pending row that the positions
step resolves by client_order_id — never an untracked position at the broker.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from trading_pipeline.broker.base import Broker, BrokerError, BrokerOrder, OrderRejected, OrderRequest
from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.risk import RiskLimits, SizedEntry, size_entries
from trading_pipeline.domain.strategy import Candidate, EntryStrategy
from trading_pipeline.domain.types import OrderAction, OrderSide, TradeStatus
from trading_pipeline.steps.orders import is_dead, order_fields
from trading_pipeline.store import repository as repo
from trading_pipeline.store.alerts_repository import current_trading_state
from trading_pipeline.store.database import Database

HISTORY_CALENDAR_DAYS = 14  # enough calendar days to cover the strategy's lookback in trading days


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
    opened_trades: list[dict[str, Any]] = field(default_factory=list)
    buying_power: Decimal | None = None


def open_entries(
    db: Database,
    broker: Broker,
    *,
    strategy: EntryStrategy,
    limits: RiskLimits,
    trading_date: date,
    run_id: str | None,
    now: datetime | None = None,
) -> EntriesResult:
    result = EntriesResult(trading_date=trading_date)
    decision_run = repo.start_decision_run(db, kind="entries", run_id=run_id, strategy=strategy.name)
    result.decision_run_id = str(decision_run)
    meta: dict[str, Any] = {"trading_date": trading_date, "strategy": strategy, "limits": limits}
    try:
        _open_entries(db, broker, strategy, limits, trading_date, run_id, now, result, decision_run, meta)
    finally:
        meta["result"] = result
        repo.finish_decision_run(db, decision_run, meta)
    return result


def _open_entries(db, broker, strategy, limits, trading_date, run_id, now, result, decision_run, meta) -> None:
    halt = current_trading_state(db)
    meta["kill_switch"] = halt
    if halt.halted:  # the kill switch stops new risk; the stop-loss sweep keeps protecting what is open
        result.skipped_reason = f"trading halted by {halt.actor}: {halt.reason} (`trading-pipeline resume` to lift)"
        return
    snapshot = repo.get_universe_snapshot(db, trading_date)
    if snapshot is None or not snapshot.symbols:
        result.skipped_reason = f"no universe sample stored for {trading_date}: materialize `universe` first"
        return
    account = broker.account()
    meta["account"] = account
    result.buying_power = account.buying_power
    if not account.can_trade:
        result.skipped_reason = (
            f"account cannot trade (status {account.status}, trading_blocked {account.trading_blocked})"
        )
        return
    if account.buying_power <= 0:
        result.skipped_reason = f"no buying power ({account.buying_power})"
        return

    quotes = repo.quotes_for_run(db, run_id) if run_id else {}
    missing = [s for s in snapshot.symbols if s not in quotes]
    if missing:
        quotes.update(broker.latest_quotes(missing).quotes)
    bars = broker.daily_bars(
        snapshot.symbols, trading_date - timedelta(days=HISTORY_CALENDAR_DAYS), trading_date - timedelta(days=1)
    )
    closes: dict[str, list[Decimal]] = {}
    for bar in sorted(bars, key=lambda b: b.timestamp):
        closes.setdefault(bar.symbol, []).append(bar.close)
    candidates = [Candidate(s, quotes[s], closes.get(s, [])) for s in snapshot.symbols if s in quotes]
    result.candidates = len(candidates)

    screened = strategy.screen(candidates)
    result.proposed = len(screened.intents)
    open_now = repo.open_trades(db) + repo.trades_with_status(db, TradeStatus.PENDING_OPEN)
    sizing = size_entries(
        screened.intents,
        limits=limits,
        buying_power=account.buying_power,
        open_symbols=[t.symbol for t in open_now],
        open_notional=sum((t.qty * t.entry_price for t in open_now), Decimal(0)),
    )
    result.sized = len(sizing.entries)
    result.dropped = dict(sizing.dropped)
    meta["screen_rejected"] = screened.rejected
    orders: list[BrokerOrder] = []
    meta["orders"] = orders
    for entry in sizing.entries:
        order = _open_one(db, broker, entry, strategy.name, decision_run, result, now)
        if order is not None:
            orders.append(order)


def _open_one(
    db, broker, entry: SizedEntry, strategy_name, decision_run, result: EntriesResult, now
) -> BrokerOrder | None:
    intent = entry.intent
    trade_id = uuid.uuid4()
    cid = client_order_id(trade_id, OrderAction.OPEN)
    trade = repo.insert_trade(
        db,
        repo.NewTrade(
            id=trade_id,
            symbol=intent.symbol,
            side=intent.side,
            qty=entry.qty,
            entry_price=intent.reference_price,
            entry_at=now or datetime.now(UTC),
            stop_loss=intent.stop_loss,
            take_profit=intent.take_profit,
            strategy=strategy_name,
            decision_run_id=decision_run,
            status=TradeStatus.PENDING_OPEN,
            open_client_order_id=cid,
        ),
    )
    try:
        order = broker.submit_order(
            OrderRequest(symbol=intent.symbol, side=OrderSide.BUY, qty=entry.qty, client_order_id=cid)
        )
    except OrderRejected as exc:
        repo.cancel_pending_entry(db, trade.id, client_order_id=cid)
        result.failures[intent.symbol] = f"entry rejected by broker: {exc.message}"
        return None
    except BrokerError as exc:
        result.failures[intent.symbol] = f"entry submit unresolved, will reconcile by client_order_id: {exc}"
        return None
    result.orders_submitted += 1
    repo.upsert_order(db, order_fields(order, trade.id))
    if order.is_filled and order.filled_avg_price is not None:
        repo.mark_entry_filled(
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
            }
        )
    elif is_dead(order):
        repo.cancel_pending_entry(db, trade.id, client_order_id=cid)
        result.failures[intent.symbol] = f"entry order {order.status}"
    else:
        result.pending += 1
    return order
