"""Nothing lost, nothing doubled: judged from the trading DB and the sim broker's book.

These checks read the outcome, never the pipeline's own counters: the broker's orders and positions are
the truth about money, the DB is the truth about what the pipeline believes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from decimal import Decimal

from trading_pipeline.domain.ids import parse_client_order_id
from trading_pipeline.domain.types import OrderAction, PositionSide, TradeStatus
from trading_pipeline.sim.server import SimBroker
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database


def close_fills_by_trade(sim: SimBroker) -> dict[str, list]:
    """Filled (or partly filled) close orders at the broker, by the trade id in their client_order_id."""
    fills: dict[str, list] = defaultdict(list)
    for order in sim.market.book.orders.values():
        parsed = parse_client_order_id(order.client_order_id)
        if parsed is not None and parsed[1] is OrderAction.CLOSE and order.filled_qty > 0:
            fills[str(parsed[0])].append(order)
    return fills


def nothing_lost_or_doubled(
    db: Database, sim: SimBroker, must_be_closed: Iterable[trades_repo.TradeRecord] = ()
) -> list[str]:
    """Every violation found, as text (empty = healthy):

    - a `client_order_id` used by two broker orders, or a trade with two filled close orders (doubled);
    - a short position at the broker (a long closed twice);
    - a `closing` row left behind;
    - a trade closed in the DB without the broker's fill for its close order, or at another price (lost) —
      unless the broker no longer held it and the DB says so with a `closed_outside` audit row;
    - a broker fill of a close order whose trade the DB does not record as closed (lost);
    - a trade in `must_be_closed` that is not closed;
    - DB open trades and broker positions that disagree.
    """
    problems: list[str] = []
    book = sim.market.book
    for cid, n in Counter(o.client_order_id for o in book.orders.values()).items():
        if n > 1:
            problems.append(f"client_order_id {cid} used by {n} broker orders")
    fills = close_fills_by_trade(sim)
    for trade_id, orders in fills.items():
        if len(orders) > 1:
            problems.append(f"trade {trade_id}: {len(orders)} filled close orders at the broker")
    shorts = sorted(p.symbol for p in book.positions.values() if p.qty < 0)
    if shorts:
        problems.append(f"short positions at the broker: {shorts}")
    closing = trades_repo.closing_trades(db)
    if closing:
        problems.append(f"closing rows left: {[t.symbol for t in closing]}")

    closed = {str(t.id): t for t in trades_repo.trades_with_status(db, TradeStatus.CLOSED)}
    by_cid = {o.client_order_id: o for o in book.orders.values()}
    outside = {a.trade_id for a in adjustments_repo.adjustments(db) if a.kind == adjustments_repo.CLOSED_OUTSIDE}
    for trade in closed.values():
        if trade.id in outside and trade.close_client_order_id is None:
            continue  # the broker's book said it was gone: repaired with its audit row, no order of ours
        order = by_cid.get(trade.close_client_order_id or "")
        if order is None or order.filled_qty != trade.qty:
            problems.append(
                f"{trade.symbol}: closed in the DB but its order {trade.close_client_order_id} is not filled"
            )
            continue
        if trade.close_price != order.filled_avg_price or trade.closed_at is None:
            problems.append(
                f"{trade.symbol}: DB close {trade.close_price} at {trade.closed_at}, broker fill "
                f"{order.filled_avg_price}"
            )
        stored = orders_repo.get_order(db, order.client_order_id)
        if stored is None or stored.status != "filled":
            problems.append(
                f"{trade.symbol}: orders table row for {order.client_order_id} is {stored and stored.status}"
            )
    for trade_id in fills:
        if trade_id not in closed:
            problems.append(f"trade {trade_id}: filled close at the broker, not closed in the DB")
    for trade in must_be_closed:
        if str(trade.id) not in closed:
            current = trades_repo.get_trade(db, trade.id)
            problems.append(f"{trade.symbol}: expected closed, is {current and current.status.value}")

    expected: dict[str, Decimal] = defaultdict(Decimal)
    for trade in trades_repo.open_trades(db):
        expected[trade.symbol] += trade.qty if trade.side is PositionSide.LONG else -trade.qty
    held = {p.symbol: p.qty for p in book.positions.values()}
    for symbol in sorted(set(expected) | set(held)):
        if expected.get(symbol, Decimal(0)) != held.get(symbol, Decimal(0)):
            problems.append(f"{symbol}: DB open qty {expected.get(symbol, 0)}, broker holds {held.get(symbol, 0)}")
    return problems
