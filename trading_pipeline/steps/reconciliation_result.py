"""What one reconciliation found and repaired (`steps/reconcile.py`, `steps/vanished.py`), for the checks and
the run's metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from trading_pipeline.broker.base import BrokerPosition


@dataclass
class Reconciliation:
    db_symbols: int = 0
    broker_symbols: int = 0
    matched: int = 0
    missing_at_broker: dict[str, str] = field(default_factory=dict)  # in the DB, not at the broker
    extra_at_broker: dict[str, str] = field(default_factory=dict)  # at the broker, not in the DB
    qty_mismatch: dict[str, str] = field(default_factory=dict)
    possible_splits: dict[str, str] = field(default_factory=dict)
    repaired: dict[str, str] = field(default_factory=dict)  # what the DB was changed to follow the broker
    pending_filled: int = 0
    pending_partial: int = 0
    pending_cancelled: int = 0
    pending_waiting: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    closing_symbols: list[str] = field(default_factory=list)
    unavailable: str | None = None  # the broker's positions could not be read: nothing was compared
    # Missing at the broker with no evidence of how they left: still open, looked up again every run.
    unconfirmed: dict[str, str] = field(default_factory=dict)
    unconfirmed_qty: dict[str, Decimal] = field(default_factory=dict)  # symbol → the shares the DB still holds
    relinked: dict[str, str] = field(default_factory=dict)  # OLD → NEW: our shares found under a new symbol
    mass_disappearance: str | None = None  # most of the book gone in one read: one incident, no write-off
    broker_positions: list[BrokerPosition] = field(default_factory=list)  # the listing compared, as read

    @property
    def clean(self) -> bool:
        return self.unavailable is None and not (
            self.missing_at_broker or self.extra_at_broker or self.qty_mismatch or self.possible_splits
        )

    @property
    def mismatches(self) -> dict[str, str]:
        found = {**self.missing_at_broker, **self.extra_at_broker, **self.qty_mismatch, **self.possible_splits}
        if self.unavailable:
            found["(positions)"] = self.unavailable
        return found


def shares(qty: Decimal | None) -> str:
    """A quantity as a person writes it: 55, not 55.00000000 (how NUMERIC(20, 8) returns it)."""
    if qty is None:
        return "?"
    return format(qty.normalize(), "f") if qty.is_finite() else str(qty)
