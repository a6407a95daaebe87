"""Protective orders at the broker: the second line of defence when Dagster, the daemon or the DB is down.

Entries of protected trades are bracket orders, so the broker itself holds a stop-loss and a take-profit. Every
stop-loss run then (1) records closes the broker made on its own (a stop leg filled while nothing ran: reason
`broker_stop`), (2) verifies each protected open position still has live legs at the right prices and
re-creates missing ones as an OCO pair — idempotently, with a deterministic client_order_id — and (3) cancels
exit orders left behind for symbols the product no longer holds.

It talks to the DB only through short repository transactions, never while a broker call is in flight.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from trading_pipeline.broker.base import (
    Broker,
    BrokerError,
    BrokerOrder,
    BrokerPosition,
    OrderClass,
    OrderRequest,
    OrderType,
    TimeInForce,
)
from trading_pipeline.domain.ids import client_order_id, parse_client_order_id
from trading_pipeline.domain.types import ExitReason, OrderAction, TradeStatus, closing_side
from trading_pipeline.steps.orders import order_fields
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

STOP_TYPES = (OrderType.STOP, OrderType.STOP_LIMIT)


@dataclass
class ProtectionResult:
    broker_positions: list[BrokerPosition] = field(default_factory=list)  # as fetched, for the reconciliation
    protected_positions: int = 0
    verified: int = 0
    recreated: list[str] = field(default_factory=list)
    broker_closes: list[dict[str, object]] = field(default_factory=list)
    orphans_cancelled: list[str] = field(default_factory=list)
    unprotected: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def flatten(orders: Iterable[BrokerOrder]) -> list[BrokerOrder]:
    """Parents and their legs, as one list."""
    out: list[BrokerOrder] = []
    for order in orders:
        out.append(order)
        out.extend(flatten(order.legs))
    return out


def exit_orders_by_symbol(orders: Iterable[BrokerOrder]) -> dict[str, list[BrokerOrder]]:
    """Working exit orders (stop or limit, not filled, not dead) per symbol."""
    by_symbol: dict[str, list[BrokerOrder]] = defaultdict(list)
    for order in flatten(orders):
        if order.is_open and order.type in (*STOP_TYPES, OrderType.LIMIT) and order.filled_qty == 0:
            by_symbol[order.symbol].append(order)
    return by_symbol


def protect_positions(db: Database, broker: Broker, *, now: datetime | None = None) -> ProtectionResult:
    result = ProtectionResult()
    current = now or datetime.now(UTC)
    trades = trades_repo.open_trades(db)  # read + commit
    protected = [t for t in trades if t.protected]
    result.protected_positions = len(protected)
    result.broker_positions = broker.positions()  # protection closes no position: still true afterwards
    held = {p.symbol: p for p in result.broker_positions}
    gone = [t for t in protected if t.symbol not in held]
    if gone:
        record_broker_closes(db, broker, gone, result)
    still_open = [t for t in protected if t.symbol in held]
    working = exit_orders_by_symbol(broker.open_orders())
    for trade in still_open:
        verify_legs(db, broker, trade, working.get(trade.symbol, []), result)
    cancel_orphans(db, broker, working, result, now=current)
    return result


def record_broker_closes(
    db: Database, broker: Broker, trades: list[trades_repo.TradeRecord], result: ProtectionResult
) -> None:
    """The broker no longer holds these protected positions: find the exit that filled and record it."""
    after = min(t.entry_at for t in trades) - timedelta(minutes=1)
    try:
        finished = flatten(broker.closed_orders({t.symbol for t in trades}, after))
    except BrokerError as exc:
        for trade in trades:
            result.failures[trade.symbol] = f"looking up broker-side exits failed: {exc}"
        return
    for trade in trades:
        exits = [
            o
            for o in finished
            if o.symbol == trade.symbol
            and o.is_filled
            and o.side is closing_side(trade.side)
            and (o.filled_at is None or o.filled_at >= trade.entry_at)
        ]
        if not exits:
            result.failures[trade.symbol] = "not held at the broker and no filled exit found: reconcile by hand"
            continue
        leg = exits[0]
        reason = ExitReason.BROKER_STOP if leg.type in STOP_TYPES else ExitReason.TAKE_PROFIT
        orders_repo.upsert_order(db, order_fields(leg, trade.id))
        if claims_repo.claim_for_close(
            db,
            trade.id,
            client_order_id=leg.client_order_id,
            reason=reason,
            trigger_price=leg.stop_price or leg.limit_price,
            run_id=None,
        ):
            claims_repo.record_close(
                db,
                trade.id,
                client_order_id=leg.client_order_id,
                close_price=leg.filled_avg_price,
                closed_at=leg.filled_at or datetime.now(UTC),
                reason=reason,
            )
            result.broker_closes.append(
                {"symbol": trade.symbol, "reason": reason, "price": leg.filled_avg_price, "at": leg.filled_at}
            )


def legs_match(trade: trades_repo.TradeRecord, orders: list[BrokerOrder]) -> bool:
    side = closing_side(trade.side)
    mine = [o for o in orders if o.side is side and o.qty == trade.qty]
    stop_ok = trade.stop_loss is None or any(o.type in STOP_TYPES and o.stop_price == trade.stop_loss for o in mine)
    take_ok = trade.take_profit is None or any(
        o.type is OrderType.LIMIT and o.limit_price == trade.take_profit for o in mine
    )
    return stop_ok and take_ok


def verify_legs(
    db: Database, broker: Broker, trade: trades_repo.TradeRecord, working: list[BrokerOrder], result: ProtectionResult
) -> None:
    if legs_match(trade, working):
        result.verified += 1
        return
    try:
        for order in working:  # wrong prices or half a pair: replace the whole protection
            broker.cancel_order(order.id)
        attempt = sum(
            1
            for cid in orders_repo.order_client_ids_for_trade(db, trade.id)
            if (parsed := parse_client_order_id(cid)) is not None and parsed[1] is OrderAction.STOP
        )
        cid = client_order_id(trade.id, OrderAction.STOP, attempt)
        order = broker.submit_order(protective_order(trade, cid))
    except BrokerError as exc:
        result.unprotected[trade.symbol] = f"protective legs missing and could not be re-created: {exc}"
        return
    orders_repo.upsert_order(db, order_fields(order, trade.id))
    trades_repo.set_protection(db, trade.id, cid)
    result.recreated.append(trade.symbol)


def protective_order(trade: trades_repo.TradeRecord, cid: str) -> OrderRequest:
    """An OCO pair (take-profit limit + stop) on an open position, or a lone stop when there is no target.
    GTC: protection must outlive the day the pipeline might be down."""
    common = {
        "symbol": trade.symbol,
        "side": closing_side(trade.side),
        "qty": trade.qty,
        "client_order_id": cid,
        "time_in_force": TimeInForce.GTC,
    }
    if trade.take_profit is None:
        return OrderRequest(**common, type=OrderType.STOP, stop_price=trade.stop_loss)  # type: ignore[arg-type]
    return OrderRequest(
        **common,  # type: ignore[arg-type]
        type=OrderType.LIMIT,
        limit_price=trade.take_profit,
        order_class=OrderClass.OCO,
        take_profit_limit_price=trade.take_profit,
        stop_loss_stop_price=trade.stop_loss,
    )


def cancel_orphans(
    db: Database, broker: Broker, working: dict[str, list[BrokerOrder]], result: ProtectionResult, *, now: datetime
) -> None:
    """Exit orders for symbols with no open or closing trade protect nothing and could open a position."""
    active = {t.symbol for t in trades_repo.open_trades(db)} | {t.symbol for t in trades_repo.closing_trades(db)}
    active |= {t.symbol for t in trades_repo.trades_with_status(db, TradeStatus.PENDING_OPEN)}
    for symbol, orders in working.items():
        if symbol in active:
            continue
        for order in orders:
            try:
                broker.cancel_order(order.id)
                result.orphans_cancelled.append(f"{symbol} {order.type.value} {order.id[:8]}")
            except BrokerError as exc:
                result.failures[symbol] = f"cancelling orphan exit order failed: {exc}"


def cancel_protection(broker: Broker, symbol: str) -> list[BrokerOrder]:
    """Before the sweep sells a protected position itself: cancel its legs (Alpaca refuses to sell shares held
    for open orders, 403 "insufficient qty available"). Returns the legs it could not cancel because they filled."""
    filled: list[BrokerOrder] = []
    for order in exit_orders_by_symbol(broker.open_orders([symbol])).get(symbol, []):
        try:
            broker.cancel_order(order.id)
        except BrokerError:
            again = broker.order_by_client_order_id(order.client_order_id)
            if again is not None and again.is_filled:
                filled.append(again)
            else:
                raise
    return filled
