"""Deterministic, broker-valid client_order_ids."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_pipeline.domain.ids import MAX_CLIENT_ORDER_ID_LENGTH, client_order_id, parse_client_order_id
from trading_pipeline.domain.types import OrderAction


@given(st.uuids(), st.sampled_from(list(OrderAction)), st.integers(0, 999))
def test_valid_length_deterministic_and_reversible(trade_id: uuid.UUID, action: OrderAction, attempt: int) -> None:
    value = client_order_id(trade_id, action, attempt)
    assert len(value) <= MAX_CLIENT_ORDER_ID_LENGTH
    assert value == client_order_id(trade_id, action, attempt)
    assert value.isascii()
    assert parse_client_order_id(value) == (trade_id, action, attempt)


def test_distinct_for_each_action_and_attempt() -> None:
    trade = uuid.uuid4()
    ids = {client_order_id(trade, action, attempt) for action in OrderAction for attempt in range(5)}
    assert len(ids) == len(OrderAction) * 5


def test_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match=r"uuid\.UUID"):
        client_order_id(42, OrderAction.CLOSE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempt"):
        client_order_id(uuid.uuid4(), OrderAction.CLOSE, -1)
    with pytest.raises(ValueError):
        client_order_id(uuid.uuid4(), "explode")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", "manual-order", "tp-zz-close-0", f"tp-{uuid.uuid4().hex}-nope-0"])
def test_foreign_ids_parse_to_none(value: str) -> None:
    assert parse_client_order_id(value) is None
