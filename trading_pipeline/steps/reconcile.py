"""Open trades vs broker positions, and pending entries resolved by client_order_id."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading_pipeline.broker.base import Broker, BrokerError, BrokerPosition
from trading_pipeline.domain.types import TradeStatus, signed_qty
from trading_pipeline.steps.orders import is_dead, order_fields
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

PENDING_GRACE = timedelta(minutes=2)


@dataclass
class Reconciliation:
    db_symbols: int = 0
    broker_symbols: int = 0
    matched: int = 0
    missing_at_broker: dict[str, str] = field(default_factory=dict)  # in the DB, not at the broker
    extra_at_broker: dict[str, str] = field(default_factory=dict)  # at the broker, not in the DB
    qty_mismatch: dict[str, str] = field(default_factory=dict)
    pending_filled: int = 0
    pending_cancelled: int = 0
    pending_waiting: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    closing_symbols: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing_at_broker or self.extra_at_broker or self.qty_mismatch)


def resolve_pending_entries(
    db: Database,
    broker: Broker,
    result: Reconciliation,
    *,
    now: datetime | None = None,
    grace: timedelta = PENDING_GRACE,
) -> None:
    current = now or datetime.now(UTC)
    for trade in trades_repo.trades_with_status(db, TradeStatus.PENDING_OPEN):
        cid = trade.open_client_order_id
        if cid is None:
            result.failures[trade.symbol] = "pending entry without client_order_id"
            continue
        try:
            order = broker.order_by_client_order_id(cid)
        except BrokerError as exc:
            result.failures[trade.symbol] = f"pending entry lookup failed: {exc}"
            continue
        if order is not None:
            orders_repo.upsert_order(db, order_fields(order, trade.id))
        if order is not None and order.is_filled and order.filled_avg_price is not None:
            trades_repo.mark_entry_filled(
                db,
                trade.id,
                client_order_id=cid,
                fill_price=order.filled_avg_price,
                filled_qty=order.filled_qty,
                filled_at=order.filled_at or current,
            )
            result.pending_filled += 1
        elif (order is None and current - trade.entry_at >= grace) or (order and is_dead(order)):
            trades_repo.cancel_pending_entry(db, trade.id, client_order_id=cid)
            result.pending_cancelled += 1
        else:
            result.pending_waiting += 1


def reconcile_positions(
    db: Database,
    broker: Broker,
    *,
    now: datetime | None = None,
    broker_positions: list[BrokerPosition] | None = None,
) -> Reconciliation:
    """`broker_positions`: what this run already fetched (the protection step), so the broker is asked once."""
    result = Reconciliation()
    resolve_pending_entries(db, broker, result, now=now)
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for trade in trades_repo.open_trades(db):
        expected[trade.symbol] += signed_qty(trade.qty, trade.side)
    # A `closing` row's order may or may not have filled yet: its symbol is judged after the sweep settles it.
    closing = {t.symbol for t in trades_repo.closing_trades(db)}
    result.closing_symbols = sorted(closing)
    positions = broker.positions() if broker_positions is None else broker_positions
    held = {p.symbol: signed_qty(p.qty, p.side) for p in positions}
    result.db_symbols = len(expected)
    result.broker_symbols = len(held)
    for symbol in sorted((set(expected) | set(held)) - closing):
        want, have = expected.get(symbol), held.get(symbol)
        if want is None:
            result.extra_at_broker[symbol] = f"broker holds {have}, no open trade"
        elif have is None:
            result.missing_at_broker[symbol] = f"DB expects {want}, broker holds nothing"
        elif want != have:
            result.qty_mismatch[symbol] = f"DB expects {want}, broker holds {have}"
        else:
            result.matched += 1
    return result
