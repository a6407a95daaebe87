"""Corporate actions applied before any sweep of the ex-date session: splits re-base, names follow.

Read from the broker's corporate-actions API for the held symbols — in the first stop-loss run of each
session, and again whenever the reconciliation sees a held symbol's quantity move (a split that the first
read did not know yet). Each trade bought before the ex-date is re-based once per action (quantity × ratio;
entry, stop, take-profit and high-water mark ÷ ratio) in one short transaction with its audit row; broker-side
protection at the old prices is then replaced by the protection step. A name change re-points the trades.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from trading_pipeline.broker.base import Broker, BrokerError
from trading_pipeline.domain.calendar import NEW_YORK
from trading_pipeline.domain.corporate_actions import NAME_CHANGE, CorporateAction, rebased_price, rebased_qty
from trading_pipeline.domain.types import TradeStatus
from trading_pipeline.steps.protection import protect_positions
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

LOOKBACK = timedelta(days=10)  # an action missed while the pipeline was down is still applied when it returns
DECISION_KIND = "corporate_actions"


@dataclass
class CorporateActionsResult:
    read: bool = False
    actions: list[str] = field(default_factory=list)
    rebased: dict[str, str] = field(default_factory=dict)  # "SYMBOL trade" → what changed
    renamed: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def read_at_session_start(
    db: Database, broker: Broker, *, today: date, session_start: datetime, run_id: str | None
) -> CorporateActionsResult:
    """Once per session (the first stop-loss run that gets here): read and apply for every held symbol."""
    if runs_repo.decision_runs_since(db, kind=DECISION_KIND, since=session_start):
        return CorporateActionsResult()
    result = apply_corporate_actions(db, broker, today=today, run_id=run_id)
    if result.read:
        marker = runs_repo.start_decision_run(db, kind=DECISION_KIND, run_id=run_id)
        runs_repo.finish_decision_run(db, marker, {"trading_date": today, "result": result})
    return result


def apply_corporate_actions(
    db: Database,
    broker: Broker,
    *,
    today: date,
    symbols: Iterable[str] | None = None,
    run_id: str | None = None,
) -> CorporateActionsResult:
    result = CorporateActionsResult()
    trades = trades_repo.open_trades(db) + trades_repo.trades_with_status(db, TradeStatus.PENDING_OPEN)
    wanted = set(symbols) if symbols is not None else {t.symbol for t in trades}
    if not wanted:
        return result
    try:
        actions = broker.corporate_actions(wanted, today - LOOKBACK, today)
    except (BrokerError, ValueError) as exc:
        result.failures["(corporate actions)"] = f"corporate actions unreadable: {exc}"
        return result
    result.read = True
    for action in actions:
        if action.ex_date > today or action.symbol not in wanted:
            continue
        result.actions.append(action.describe())
        bought_before = [
            t for t in trades if t.symbol == action.symbol and t.entry_at.astimezone(NEW_YORK).date() < action.ex_date
        ]
        for trade in bought_before:
            if action.kind == NAME_CHANGE:
                _rename(db, trade, action, result, run_id)
            elif action.is_split and action.ratio > 0:
                _rebase(db, trade, action, result, run_id)
    return result


def _rebase(
    db: Database,
    trade: trades_repo.TradeRecord,
    action: CorporateAction,
    result: CorporateActionsResult,
    run_id: str | None,
) -> None:
    ratio = action.ratio
    prices = {
        "entry_price": rebased_price(trade.entry_price, ratio),
        "stop_loss": rebased_price(trade.stop_loss, ratio),
        "take_profit": rebased_price(trade.take_profit, ratio),
        "high_water_mark": rebased_price(trade.high_water_mark, ratio),
    }
    qty = rebased_qty(trade.qty, ratio)
    reason = f"{action.describe()}: qty {trade.qty} → {qty}, stop {trade.stop_loss} → {prices['stop_loss']}"
    if adjustments_repo.rebase_for_split(
        db, trade.id, action_key=action.key, ratio=ratio, qty=qty, prices=prices, reason=reason, run_id=run_id
    ):
        result.rebased[f"{trade.symbol} {str(trade.id)[:8]}"] = reason


def _rename(
    db: Database,
    trade: trades_repo.TradeRecord,
    action: CorporateAction,
    result: CorporateActionsResult,
    run_id: str | None,
) -> None:
    if action.new_symbol and adjustments_repo.rename_symbol(
        db, trade.id, action_key=action.key, new_symbol=action.new_symbol, reason=action.describe(), run_id=run_id
    ):
        result.renamed[f"{trade.symbol} {str(trade.id)[:8]}"] = action.describe()


def prepare_session(
    db: Database, broker: Broker, *, today: date, now: datetime, run_id: str | None
) -> CorporateActionsResult:
    """Before the open (the pre-market go/no-go): apply today's actions and replace broker-side protection left
    at the old prices. Alpaca leaves a bracket's or an OCO's legs as they are on a corporate action (DNR/DNC,
    trading/orders.md), so a 2:1 split's stop leg at the old price would fire at the open — and a reverse
    split's take-profit, at a price far below the market, would sell the pre-split quantity — before the
    first stop-loss run of the session could re-base anything. Never raises: a failure is in the result."""
    result = apply_corporate_actions(db, broker, today=today, run_id=run_id)
    if result.rebased or result.renamed:
        try:
            protection = protect_positions(db, broker, now=now)
        except BrokerError as exc:
            result.failures["(protection)"] = f"protection not re-armed before the open: {exc}"
            return result
        result.failures.update({s: f"protection: {p}" for s, p in protection.unprotected.items()})
        result.failures.update({s: f"protection: {p}" for s, p in protection.failures.items()})
    return result
