"""Changes that make a trade follow the broker's book, each with its audit row in the same short transaction.

The broker's book is the truth about what is held; the trades table is the record of intent. When they
diverge, the trade is changed here — never silently: every change writes a `position_adjustments` row with
what it was, what it became and why, so a person can read back every repair the pipeline made.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from trading_pipeline.domain.types import ExitReason, TradeStatus
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import PositionAdjustment, Trade, utc_now
from trading_pipeline.store.trades_repository import NewTrade, TradeRecord, check_levels, trade_record, trade_row

QTY_DRIFT = "qty_drift"
CLOSED_OUTSIDE = "closed_outside"
PARTIAL_CLOSE = "partial_close"
PARTIAL_ENTRY = "partial_entry"
SPLIT_REBASE = "split_rebase"
RENAME = "symbol_change"
ADOPTED = "adopted"
OUTSIDE_FLATTEN = "outside_flatten"


@dataclass(frozen=True, slots=True)
class AdjustmentRecord:
    id: int
    trade_id: uuid.UUID | None
    symbol: str
    kind: str
    before: Any
    after: Any
    reason: str
    created_at: datetime


def _audit(session: Any, trade: Trade, kind: str, before: dict, after: dict, reason: str, run_id: str | None) -> None:
    session.add(
        PositionAdjustment(
            trade_id=trade.id,
            symbol=trade.symbol,
            kind=kind,
            before=before,
            after=after,
            reason=reason,
            dagster_run_id=run_id,
        )
    )


def reduce_to_held(db: Database, trade_id: uuid.UUID, *, qty: Decimal, reason: str, run_id: str | None = None) -> bool:
    """An open trade's quantity lowered to what the broker holds for it (never raised: shares the pipeline did
    not buy are not adopted). False if the trade is no longer open or already at or below `qty`."""
    with db.transaction() as session:
        row = session.scalar(sa.select(Trade).where(Trade.id == trade_id, Trade.status == TradeStatus.OPEN))
        if row is None or not (0 < qty < row.qty):
            return False
        before = {"qty": row.qty}
        row.qty = qty
        row.updated_at = utc_now()
        _audit(session, row, QTY_DRIFT, before, {"qty": qty}, reason, run_id)
        return True


def add_residue(db: Database, trade_id: uuid.UUID, *, qty: Decimal, reason: str, run_id: str | None = None) -> bool:
    """An open trade's quantity raised to take in a fraction of a share the broker holds beside it (a residue of
    a split's cash in lieu, a fractional fill): those shares descend from the trade and are protected with it.
    False if the trade is no longer open or already holds `qty` or more."""
    with db.transaction() as session:
        row = session.scalar(sa.select(Trade).where(Trade.id == trade_id, Trade.status == TradeStatus.OPEN))
        if row is None or qty <= row.qty:
            return False
        before = {"qty": row.qty}
        row.qty = qty
        row.updated_at = utc_now()
        _audit(session, row, QTY_DRIFT, before, {"qty": qty}, reason, run_id)
        return True


def close_outside(
    db: Database,
    trade_id: uuid.UUID,
    *,
    close_price: Decimal | None,
    closed_at: datetime,
    reason: str,
    run_id: str | None = None,
) -> bool:
    """An open trade the broker no longer holds, closed as `manual` (sold outside the pipeline): at the fill
    price of the closing order found at the broker, or with no price when none was found."""
    with db.transaction() as session:
        row = session.scalar(sa.select(Trade).where(Trade.id == trade_id, Trade.status == TradeStatus.OPEN))
        if row is None:
            return False
        before = {"status": row.status, "qty": row.qty}
        row.status = TradeStatus.CLOSED
        row.close_reason = ExitReason.MANUAL
        row.close_price = close_price
        row.closed_at = closed_at
        row.status_reason = reason
        row.updated_at = utc_now()
        _audit(session, row, CLOSED_OUTSIDE, before, {"status": row.status, "close_price": close_price}, reason, run_id)
        return True


def split_partial_close(
    db: Database,
    trade_id: uuid.UUID,
    *,
    client_order_id: str,
    filled_qty: Decimal,
    close_price: Decimal,
    closed_at: datetime,
    run_id: str | None = None,
) -> TradeRecord | None:
    """A close order that ended partly filled: the filled shares become their own closed trade (exact P&L),
    the rest stays this trade, open again so the next sweep closes it with its next attempt number.

    Only for the claim identified by `client_order_id`; None when that claim is not (or no longer) current."""
    with db.transaction() as session:
        row = session.scalar(
            sa.select(Trade)
            .where(
                Trade.id == trade_id,
                Trade.status == TradeStatus.CLOSING,
                Trade.close_client_order_id == client_order_id,
            )
            .with_for_update()
        )
        if row is None or not (0 < filled_qty < row.qty):
            return None
        closed = Trade(
            id=uuid.uuid4(),
            symbol=row.symbol,
            side=row.side,
            qty=filled_qty,
            entry_price=row.entry_price,
            entry_at=row.entry_at,
            stop_loss=row.stop_loss,
            take_profit=row.take_profit,
            trailing_pct=row.trailing_pct,
            high_water_mark=row.high_water_mark,
            status=TradeStatus.CLOSED,
            strategy=row.strategy,
            decision_run_id=row.decision_run_id,
            close_reason=row.close_reason,
            close_trigger_price=row.close_trigger_price,
            close_price=close_price,
            closed_at=closed_at,
            close_attempts=row.close_attempts,
            closing_started_at=row.closing_started_at,
            closing_run_id=row.closing_run_id,
            protected=False,
            status_reason=f"split from trade {row.id}: part of close order {client_order_id} filled",
        )
        before = {"qty": row.qty, "status": row.status}
        row.qty = row.qty - filled_qty
        row.status = TradeStatus.OPEN
        row.close_client_order_id = None
        row.close_reason = None
        row.close_trigger_price = None
        row.closing_started_at = None
        row.closing_run_id = None
        row.updated_at = utc_now()
        session.flush()  # the original gives up the close id before the split-off row takes it (unique)
        closed.close_client_order_id = client_order_id
        session.add(closed)
        reason = f"close order {client_order_id} filled {filled_qty} of {before['qty']}; the rest is closed next"
        _audit(session, row, PARTIAL_CLOSE, before, {"qty": row.qty, "closed_trade": closed.id}, reason, run_id)
        session.flush()
        return trade_record(closed)


def open_partial_entry(
    db: Database,
    trade_id: uuid.UUID,
    *,
    client_order_id: str,
    order: Any,
    filled_at: datetime,
    run_id: str | None = None,
) -> bool:
    """pending_open → open at the part of the entry order that filled (the rest was cancelled): the trade
    holds exactly what was bought, at its fill price."""
    with db.transaction() as session:
        row = session.scalar(
            sa.select(Trade)
            .where(
                Trade.id == trade_id,
                Trade.status == TradeStatus.PENDING_OPEN,
                Trade.open_client_order_id == client_order_id,
            )
            .with_for_update()
        )
        if row is None:
            return False
        before = {"qty": row.qty, "status": row.status}
        row.status = TradeStatus.OPEN
        row.qty = order.filled_qty
        row.entry_price = order.filled_avg_price
        row.entry_at = filled_at
        if row.trailing_pct is not None:
            row.high_water_mark = order.filled_avg_price
        row.updated_at = utc_now()
        reason = f"entry {client_order_id} filled {order.filled_qty} of {order.qty}; the rest was cancelled"
        _audit(session, row, PARTIAL_ENTRY, before, {"qty": row.qty, "status": row.status}, reason, run_id)
        return True


def rebase_for_split(
    db: Database,
    trade_id: uuid.UUID,
    *,
    action_key: str,
    ratio: Decimal,
    qty: Decimal,
    prices: dict[str, Decimal | None],
    reason: str,
    run_id: str | None = None,
) -> bool:
    """Apply a split to one open (or pending) trade: quantity and every level re-based, in one transaction with
    its audit row. Idempotent by `action_key`: a split is applied to a trade once, whatever re-reads it."""
    with db.transaction() as session:
        row = session.scalar(
            sa.select(Trade)
            .where(Trade.id == trade_id, Trade.status.in_([TradeStatus.OPEN, TradeStatus.PENDING_OPEN]))
            .with_for_update()
        )
        if row is None:
            return False
        done = session.scalar(
            sa.select(sa.func.count())
            .select_from(PositionAdjustment)
            .where(
                PositionAdjustment.trade_id == trade_id,
                PositionAdjustment.kind == SPLIT_REBASE,
                PositionAdjustment.reason.startswith(action_key),
            )
        )
        if done:
            return False
        names = ("entry_price", "stop_loss", "take_profit", "high_water_mark")
        before = {"qty": row.qty, "ratio": ratio, **{name: getattr(row, name) for name in names}}
        row.qty = qty
        for name in names:
            if name in prices:
                setattr(row, name, prices[name])
        row.updated_at = utc_now()
        after = {"qty": row.qty, **{name: getattr(row, name) for name in names}}
        _audit(session, row, SPLIT_REBASE, before, after, f"{action_key}: {reason}", run_id)
        return True


def rename_symbol(
    db: Database, trade_id: uuid.UUID, *, action_key: str, new_symbol: str, reason: str, run_id: str | None = None
) -> bool:
    """A symbol change: the trade follows its shares to the new ticker (once per action)."""
    with db.transaction() as session:
        row = session.scalar(
            sa.select(Trade).where(Trade.id == trade_id, Trade.status.in_([TradeStatus.OPEN, TradeStatus.PENDING_OPEN]))
        )
        if row is None or row.symbol == new_symbol:
            return False
        before = {"symbol": row.symbol}
        row.symbol = new_symbol
        row.updated_at = utc_now()
        _audit(session, row, RENAME, before, {"symbol": new_symbol}, f"{action_key}: {reason}", run_id)
        return True


def adopt_position(db: Database, new: NewTrade, *, broker_avg_entry: Decimal, reason: str, run_id: str | None) -> bool:
    """A position the pipeline did not open becomes a trade it protects, with its audit row, once: False when
    an open trade in the symbol exists already (another run adopted it first)."""
    check_levels(new)
    active = [TradeStatus.OPEN, TradeStatus.CLOSING, TradeStatus.PENDING_OPEN]
    with db.transaction() as session:
        taken = sa.select(Trade.id).where(Trade.symbol == new.symbol, Trade.status.in_(active)).limit(1)
        if session.scalar(taken) is not None:
            return False
        row = trade_row(new)
        session.add(row)
        session.flush()
        after = {"qty": row.qty, "stop_loss": row.stop_loss, "take_profit": row.take_profit}
        _audit(session, row, ADOPTED, {"broker_avg_entry_price": broker_avg_entry}, after, reason, run_id)
        return True


def record_outside_flatten(
    db: Database, *, symbol: str, before: dict, after: dict, reason: str, run_id: str | None = None
) -> None:
    """A position no trade of ours holds, closed by a person's flatten: there is no trade to change, so the
    audit row is the record (what the broker held, the order sent for it, who asked and why)."""
    with db.transaction() as session:
        session.add(
            PositionAdjustment(
                trade_id=None,
                symbol=symbol,
                kind=OUTSIDE_FLATTEN,
                before=before,
                after=after,
                reason=reason,
                dagster_run_id=run_id,
            )
        )


def adjustments(db: Database, *, symbol: str | None = None) -> list[AdjustmentRecord]:
    with db.transaction() as session:
        query = sa.select(PositionAdjustment).order_by(PositionAdjustment.id)
        if symbol is not None:
            query = query.where(PositionAdjustment.symbol == symbol)
        return [
            AdjustmentRecord(r.id, r.trade_id, r.symbol, r.kind, r.before, r.after, r.reason, r.created_at)
            for r in session.scalars(query)
        ]
