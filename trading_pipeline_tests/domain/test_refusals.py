"""What a broker's refusal of an exit means: resized now, retried at a cadence, or next run."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading_pipeline.domain.refusals import RefusalKind, classify_refusal


def test_alpacas_insufficient_qty_403_is_a_quantity_refusal_with_what_is_held() -> None:
    refusal = classify_refusal(
        403,
        40310000,
        "insufficient qty available for order (requested: 10, available: 4)",
        {"available": "4", "existing_qty": "6", "held_for_orders": "2", "symbol": "XYZ"},
    )
    assert refusal.kind is RefusalKind.QUANTITY and refusal.held == Decimal(6)


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (403, 40310100, "trade denied due to pattern day trading protection"),
        (422, 42210000, "asset XYZ is not tradable"),
        (403, 40310000, "account is not authorized to trade"),
    ],
)
def test_refusals_that_last_are_retried_at_a_cadence_and_say_what_to_do(status: int, code: int, message: str) -> None:
    refusal = classify_refusal(status, code, message, {})
    assert refusal.kind is RefusalKind.LASTING
    assert "dashboard" in refusal.what_to_do and "15 minutes" in refusal.what_to_do


def test_other_refusals_are_retried_by_the_next_run() -> None:
    refusal = classify_refusal(422, 42210000, "qty must be > 0", {})
    assert refusal.kind is RefusalKind.OTHER and refusal.held is None


def test_an_unreadable_existing_qty_is_unknown_not_zero() -> None:
    refusal = classify_refusal(403, 40310000, "insufficient qty available", {"existing_qty": "NaN"})
    assert refusal.kind is RefusalKind.QUANTITY and refusal.held is None
