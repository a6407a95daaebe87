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
    LIVE_LEG_STATUSES,
    Broker,
    BrokerError,
    BrokerOrder,
    BrokerPosition,
    OrderClass,
    OrderRequest,
    OrderType,
    TimeInForce,
)
from trading_pipeline.domain.exits import broker_stop_is_current, broker_stop_level
from trading_pipeline.domain.ids import client_order_id, parse_client_order_id
from trading_pipeline.domain.types import ExitReason, OrderAction, TradeStatus, closing_side
from trading_pipeline.steps.holding_orders import free_quantity
from trading_pipeline.steps.orders import order_fields
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

STOP_TYPES = (OrderType.STOP, OrderType.STOP_LIMIT)
PARENT_LOOKBACK = timedelta(days=4)  # a Friday-evening entry that fills at Monday's open, and a margin


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
    stops_raised: list[str] = field(default_factory=list)  # broker stop legs moved up to the trailing level


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
    """Raises BrokerError only when the broker's positions cannot be read (the caller reports it as a failed
    check); every later failure is recorded per symbol and the step goes on."""
    result = ProtectionResult()
    current = now or datetime.now(UTC)
    trades = trades_repo.open_trades(db)  # read + commit
    protected = [t for t in trades if t.protected]
    result.protected_positions = len(protected)
    result.broker_positions = broker.positions()  # protection closes no position: still true afterwards
    held = {p.symbol: p for p in result.broker_positions}
    try:
        working = exit_orders_by_symbol(broker.open_orders())
    except BrokerError as exc:
        for trade in protected:
            result.failures[trade.symbol] = f"open orders unreadable, legs not verified this run: {exc}"
        return result
    by_parent = parents_by_client_order_id(broker, protected, result)
    gone = [t for t in protected if t.symbol not in held]
    if gone:
        record_broker_closes(db, broker, gone, by_parent, result)
    for trade in (t for t in protected if t.symbol in held):
        verify_legs(db, broker, trade, working.get(trade.symbol, []), by_parent, result, position=held[trade.symbol])
    cancel_orphans(db, broker, working, result, now=current)
    return result


def parents_by_client_order_id(
    broker: Broker, trades: list[trades_repo.TradeRecord], result: ProtectionResult
) -> dict[str, BrokerOrder]:
    """The protected trades' parent orders (bracket entries, OCO pairs) with their legs, from one paged
    `status=all&nested=true` listing: after a bracket's parent fills, Alpaca keeps the stop leg `held` and a
    `status=open` listing need not show it. A parent missing here is looked up by id when it is needed."""
    if not trades:
        return {}
    # A pending entry is re-dated to its fill: its parent was submitted earlier (a market order queued out of
    # hours fills at the next open). A parent older than this margin is still found, by id, when needed.
    after = min(t.entry_at for t in trades) - PARENT_LOOKBACK
    try:
        orders = broker.all_orders({t.symbol for t in trades}, after)
    except BrokerError as exc:
        result.failures["(order listing)"] = f"status=all listing failed, legs looked up one by one: {exc}"
        return {}
    return {o.client_order_id: o for o in orders}


def protection_orders(
    broker: Broker, trade: trades_repo.TradeRecord, by_parent: dict[str, BrokerOrder] | None = None
) -> list[BrokerOrder]:
    """The trade's protective parent and its legs as the broker has them now: from the listing, else by the
    parent's client_order_id and then `GET /v2/orders/{id}?nested=true` (how Alpaca reports a bracket's legs)."""
    cid = trade.protection_client_order_id
    if cid is None:
        return []
    parent = (by_parent or {}).get(cid)
    if parent is None or not parent.legs:
        found = parent or broker.order_by_client_order_id(cid)
        if found is None:
            return []
        parent = broker.order_by_id(found.id) or found
    return parent.with_legs()


def record_broker_closes(
    db: Database,
    broker: Broker,
    trades: list[trades_repo.TradeRecord],
    by_parent: dict[str, BrokerOrder],
    result: ProtectionResult,
) -> None:
    """The broker no longer holds these protected positions: find the exit that filled and record it — by the
    trade's own protective order first (its legs live under a parent submitted before the entry filled, so a
    listing `after` the fill time misses them), else in the closed orders since the trade was created."""
    listing: list[BrokerOrder] | None = None
    for trade in trades:
        side = closing_side(trade.side)
        try:
            exits = [o for o in protection_orders(broker, trade, by_parent) if o.side is side and o.is_filled]
            if not exits:
                if listing is None:
                    after = min(t.entry_at for t in trades) - PARENT_LOOKBACK
                    listing = flatten(broker.closed_orders({t.symbol for t in trades}, after))
                exits = [
                    o
                    for o in listing
                    if o.symbol == trade.symbol
                    and o.is_filled
                    and o.side is side
                    and (o.filled_at is None or o.filled_at >= trade.entry_at)
                ]
        except BrokerError as exc:
            result.failures[trade.symbol] = f"looking up broker-side exits failed: {exc}"
            continue
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


def live_legs(trade: trades_repo.TradeRecord, orders: Iterable[BrokerOrder]) -> list[BrokerOrder]:
    """Exit orders that protect the trade right now: closing side, unfilled, in a state Alpaca keeps working
    (a bracket's stop leg is `held` while its take-profit sibling rests)."""
    side = closing_side(trade.side)
    return [o for o in orders if o.side is side and o.status in LIVE_LEG_STATUSES and o.filled_qty == 0]


def legs_match(trade: trades_repo.TradeRecord, orders: list[BrokerOrder]) -> bool:
    """Live legs at the trade's quantity and exact levels. A leg at the wrong price or quantity is not
    protection: it would sell the wrong amount, or at a price the trade never chose. A trailing trade's stop
    leg follows its trailing level (`domain.exits.broker_stop_is_current`)."""
    mine = [o for o in live_legs(trade, orders) if o.qty == trade.qty]
    view = trade.position_view()
    stop_ok = broker_stop_level(view) is None or any(
        o.type in STOP_TYPES and broker_stop_is_current(view, o.stop_price) for o in mine
    )
    take_ok = trade.take_profit is None or any(
        o.type is OrderType.LIMIT and o.limit_price == trade.take_profit for o in mine
    )
    return stop_ok and take_ok


def verify_legs(
    db: Database,
    broker: Broker,
    trade: trades_repo.TradeRecord,
    working: list[BrokerOrder],
    by_parent: dict[str, BrokerOrder],
    result: ProtectionResult,
    *,
    position: BrokerPosition | None = None,
) -> None:
    """Protection verified from the open listing, else from the trade's own parent order; replaced only when
    neither shows live legs at the right levels — so it is submitted at most once per change, never in a loop."""
    if legs_match(trade, working):
        result.verified += 1
        return
    try:
        own = protection_orders(broker, trade, by_parent)
    except BrokerError as exc:
        result.failures[trade.symbol] = f"protective legs could not be looked up: {exc}"
        return
    if legs_match(trade, own):
        result.verified += 1
        return
    if follow_trailing_stop(db, broker, trade, [*working, *own], result, position=position):
        return
    # Only the pipeline's own orders are replaced here; anyone else's is cancelled (with an alert) only when a
    # close needs the shares, by the sweep.
    ours = [o for o in working if parse_client_order_id(o.client_order_id) is not None]
    stale = {o.id: o for o in [*ours, *live_legs(trade, own)] if o.is_open}
    try:
        freed = free_quantity(broker, stale.values())  # wrong prices or half a pair: replace the whole protection
        if freed.filled or not freed.free:
            result.unprotected[trade.symbol] = "old legs not cancelled yet (or one filled): re-checked next run"
            return
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


def follow_trailing_stop(
    db: Database,
    broker: Broker,
    trade: trades_repo.TradeRecord,
    orders: list[BrokerOrder],
    result: ProtectionResult,
    *,
    position: BrokerPosition | None = None,
) -> bool:
    """A trailing trade whose legs are right but for a stop left behind the risen trailing level: that one leg
    is replaced in place (`PATCH /v2/orders/{id}`, Alpaca answers a new leg under the same parent), so that
    while the pipeline is down the broker protects the current level — never two live stop legs at once, and no
    window without one as a cancel-and-resubmit would leave. True when the stop was handled here."""
    if trade.trailing_pct is None:
        return False
    view = trade.position_view()
    wanted = broker_stop_level(view)
    legs = {o.id: o for o in live_legs(trade, orders) if o.qty == trade.qty}.values()
    stops = [o for o in legs if o.type in STOP_TYPES]
    take_ok = trade.take_profit is None or any(
        o.type is OrderType.LIMIT and o.limit_price == trade.take_profit for o in legs
    )
    if wanted is None or len(stops) != 1 or not take_ok or stops[0].stop_price is None:
        return False
    old = stops[0].stop_price
    behind = old < wanted if trade.side.value == "long" else old > wanted
    if not behind:
        return False  # beyond the level (re-based, hand-edited): replaced whole by the caller
    price = position.current_price if position is not None else None
    if price is not None and (price <= wanted if trade.side.value == "long" else price >= wanted):
        # Already through the trailing level: a stop moved there would fire at once as a market order the sweep
        # does not know of. The sweep sells it this run itself (its trailing exit), legs cancelled first.
        result.verified += 1
        return True
    try:
        moved = broker.replace_stop(stops[0].id, wanted)
    except BrokerError as exc:
        # The old leg still protects at its lower level: reported, tried again next run.
        result.failures[trade.symbol] = f"trailing stop not moved at the broker ({old} → {wanted}): {exc}"
        return True
    orders_repo.upsert_order(db, order_fields(moved, trade.id))
    result.stops_raised.append(f"{trade.symbol}: broker stop {old} → {wanted}")
    result.verified += 1
    return True


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
    stop = broker_stop_level(trade.position_view())  # a trailing trade's at its current level
    if trade.take_profit is None:
        return OrderRequest(**common, type=OrderType.STOP, stop_price=stop)  # type: ignore[arg-type]
    return OrderRequest(
        **common,  # type: ignore[arg-type]
        type=OrderType.LIMIT,
        limit_price=trade.take_profit,
        order_class=OrderClass.OCO,
        take_profit_limit_price=trade.take_profit,
        stop_loss_stop_price=stop,
    )


def cancel_orphans(
    db: Database, broker: Broker, working: dict[str, list[BrokerOrder]], result: ProtectionResult, *, now: datetime
) -> None:
    """Exit orders for symbols with no open or closing trade protect nothing and could open a position."""
    active = {t.symbol for t in trades_repo.open_trades(db, reuse=True)}
    active |= {t.symbol for t in trades_repo.closing_trades(db, reuse=True)}
    active |= {t.symbol for t in trades_repo.trades_with_status(db, TradeStatus.PENDING_OPEN, reuse=True)}
    for symbol, orders in working.items():
        if symbol in active:
            continue
        for order in orders:
            try:
                broker.cancel_order(order.id)
                result.orphans_cancelled.append(f"{symbol} {order.type.value} {order.id[:8]}")
            except BrokerError as exc:
                result.failures[symbol] = f"cancelling orphan exit order failed: {exc}"
