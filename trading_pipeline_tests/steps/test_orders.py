"""Which broker orders ended without a fill (steps/orders.py `is_dead`): the claim of a close order that died
unfilled may be released and retried; one that filled any shares may not."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from trading_pipeline.broker.base import BrokerOrder, OrderSide, OrderType
from trading_pipeline.steps.orders import is_dead

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def order(status: str, filled: int = 0) -> BrokerOrder:
    return BrokerOrder(
        id="o-1",
        client_order_id="tp-x-close-0",
        symbol="AAA",
        side=OrderSide.SELL,
        qty=Decimal(10),
        type=OrderType.MARKET,
        status=status,
        filled_qty=Decimal(filled),
        filled_avg_price=Decimal(97) if filled else None,
        submitted_at=NOW,
        filled_at=NOW if filled else None,
    )


@pytest.mark.parametrize("status", ["canceled", "expired", "rejected"])
def test_an_order_that_ended_unfilled_is_dead(status: str) -> None:
    assert is_dead(order(status))


@pytest.mark.parametrize(
    ("status", "filled"), [("canceled", 4), ("filled", 10), ("new", 0), ("partially_filled", 4), ("pending_cancel", 0)]
)
def test_an_order_that_filled_or_still_works_is_not_dead(status: str, filled: int) -> None:
    assert not is_dead(order(status, filled))
