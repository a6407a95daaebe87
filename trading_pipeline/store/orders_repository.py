"""Broker orders as the store keeps them, keyed by `client_order_id` (created before the order is sent, so
a retry or a restart updates the same row instead of adding one). Each function is one short transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from trading_pipeline.domain.types import OrderSide
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import Order
from trading_pipeline.store.upsert import upsert


@dataclass(frozen=True, slots=True)
class OrderFields:
    """What the store keeps about one broker order, keyed by client_order_id."""

    client_order_id: str
    symbol: str
    side: OrderSide
    qty: Decimal
    order_type: str
    status: str
    trade_id: uuid.UUID | None = None
    broker_order_id: str | None = None
    filled_qty: Decimal | None = None
    filled_avg_price: Decimal | None = None
    submitted_at: datetime | None = None
    filled_at: datetime | None = None
    raw: Any = None


def upsert_order(db: Database, order: OrderFields) -> None:
    """Insert or update the order with this client_order_id (idempotent: a retry never adds a row)."""
    values = {
        "client_order_id": order.client_order_id,
        "broker_order_id": order.broker_order_id,
        "trade_id": order.trade_id,
        "symbol": order.symbol,
        "side": order.side,
        "qty": order.qty,
        "order_type": order.order_type,
        "status": order.status,
        "filled_qty": order.filled_qty,
        "filled_avg_price": order.filled_avg_price,
        "submitted_at": order.submitted_at,
        "filled_at": order.filled_at,
        "raw": order.raw if order.raw is not None else {},
    }
    with db.transaction() as session:
        upsert(session, Order, [values], key="client_order_id", keep_on_conflict=("trade_id",))


def get_order(db: Database, client_order_id: str) -> OrderFields | None:
    with db.transaction() as session:
        row = session.scalar(sa.select(Order).where(Order.client_order_id == client_order_id))
        if row is None:
            return None
        return OrderFields(**{name: getattr(row, name) for name in OrderFields.__slots__})


def order_client_ids_for_trade(db: Database, trade_id: uuid.UUID) -> list[str]:
    with db.transaction() as session:
        return list(session.scalars(sa.select(Order.client_order_id).where(Order.trade_id == trade_id)))


def count_orders_by_side(db: Database, *, since: datetime | None = None) -> dict[OrderSide, int]:
    """Orders per side, by the broker's submission time when known (the market's clock), else when stored."""
    with db.transaction() as session:
        query = sa.select(Order.side, sa.func.count()).group_by(Order.side)
        if since is not None:
            query = query.where(sa.func.coalesce(Order.submitted_at, Order.created_at) >= since)
        counts = {side: 0 for side in OrderSide}
        counts.update({side: n for side, n in session.execute(query).all()})
        return counts


def first_order_at(db: Database, side: OrderSide, *, since: datetime) -> datetime | None:
    """When the first order of `side` since `since` was submitted (the market's clock when known)."""
    stamp = sa.func.coalesce(Order.submitted_at, Order.created_at)
    with db.transaction() as session:
        return session.scalar(sa.select(sa.func.min(stamp)).where(Order.side == side, stamp >= since))
