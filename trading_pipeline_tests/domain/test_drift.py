"""Split or drift (domain/drift.py): a quantity that moved by a split-like ratio with the cost basis conserved is a
possible split; the same quantity change at the old price is drift."""

from __future__ import annotations

from decimal import Decimal as D

from trading_pipeline.domain.drift import split_like_ratio


def test_a_forward_split_with_the_cost_basis_conserved_is_split_like() -> None:
    assert split_like_ratio(D(10), D(100), D(20), D(50)) == D(2)


def test_a_reverse_split_with_the_cost_basis_conserved_is_split_like() -> None:
    assert split_like_ratio(D(10), D(100), D(2), D(500)) == 1 / D(5)


def test_a_quantity_change_at_the_old_price_is_drift_not_a_split() -> None:
    assert split_like_ratio(D(10), D(100), D(20), D(100)) is None  # twice the cost basis: not a split
    assert split_like_ratio(D(10), D(100), D(7), D(100)) is None  # no split-like ratio at all
