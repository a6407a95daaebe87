"""The close protocol's state changes, each one conditional and its own short transaction:

claim (open → closing, with the deterministic client_order_id, before the order is sent) → the broker call,
outside any transaction → record (closing → closed) or release (closing → open, when the broker provably has
no order for the claim). The conditions are what make overlapping runs safe: 0 rows updated means another
run owns the trade, and the caller leaves it alone.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from trading_pipeline.domain.types import ExitReason, TradeStatus
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import Trade, utc_now


def claim_for_close(
    db: Database,
    trade_id: uuid.UUID,
    *,
    client_order_id: str,
    reason: ExitReason,
    trigger_price: Decimal | None,
    run_id: str | None,
    now: datetime | None = None,
) -> bool:
    """open → closing, atomically. True if this caller won the claim; False if the trade was not open
    (already claimed by an overlapping run, or closed): the caller must then leave it alone."""
    with db.transaction() as session:
        result = session.execute(
            sa.update(Trade)
            .where(Trade.id == trade_id, Trade.status == TradeStatus.OPEN)
            .values(
                status=TradeStatus.CLOSING,
                close_client_order_id=client_order_id,
                close_reason=reason,
                close_trigger_price=trigger_price,
                closing_started_at=now or utc_now(),
                closing_run_id=run_id,
                close_attempts=Trade.close_attempts + 1,
                updated_at=utc_now(),
            )
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def record_close(
    db: Database,
    trade_id: uuid.UUID,
    *,
    client_order_id: str,
    close_price: Decimal | None,
    closed_at: datetime,
    reason: ExitReason | None = None,
) -> bool:
    """closing → closed for the claim identified by `client_order_id`; False if that claim is not
    (or no longer) the trade's current one. `reason` overrides the claimed reason (e.g. a broker stop)."""
    values: dict[str, Any] = {
        "status": TradeStatus.CLOSED,
        "close_price": close_price,
        "closed_at": closed_at,
        "updated_at": utc_now(),
    }
    if reason is not None:
        values["close_reason"] = reason
    with db.transaction() as session:
        result = session.execute(
            sa.update(Trade)
            .where(
                Trade.id == trade_id,
                Trade.status == TradeStatus.CLOSING,
                Trade.close_client_order_id == client_order_id,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def release_claim(db: Database, trade_id: uuid.UUID, *, client_order_id: str) -> bool:
    """closing → open when the broker provably has no order for this claim (rejected, never arrived),
    so the next run may try again with the next attempt number."""
    with db.transaction() as session:
        result = session.execute(
            sa.update(Trade)
            .where(
                Trade.id == trade_id,
                Trade.status == TradeStatus.CLOSING,
                Trade.close_client_order_id == client_order_id,
            )
            .values(
                status=TradeStatus.OPEN,
                close_client_order_id=None,
                close_reason=None,
                close_trigger_price=None,
                closing_started_at=None,
                closing_run_id=None,
                updated_at=utc_now(),
            )
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1
