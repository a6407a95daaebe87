"""What one stop-loss sweep did, counted for the run's metadata and the checks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class SweepResult:
    positions_checked: int = 0
    unique_symbols: int = 0
    quote_requests: int = 0
    missing_quotes: list[str] = field(default_factory=list)
    unusable_quotes: dict[str, str] = field(default_factory=dict)
    exits_decided: int = 0
    claimed: int = 0
    claim_lost: int = 0
    orders_submitted: int = 0
    closed: int = 0
    pending_fill: int = 0
    closes_by_reason: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    leftovers_found: int = 0
    leftovers_closed: int = 0
    leftovers_released: int = 0
    high_water_marks_raised: int = 0
    closed_trades: list[dict[str, object]] = field(default_factory=list)
    partial_closes: int = 0
    # Exits decided but not sent because the broker's holding could not be read (never sized on a guess).
    unsized: dict[str, str] = field(default_factory=dict)
    drift_repaired: dict[str, str] = field(default_factory=dict)
    holding_orders_cancelled: int = 0
    outside_orders_cancelled: list[str] = field(default_factory=list)  # orders the pipeline did not place
    book_problems: dict[str, str] = field(default_factory=dict)
    split_suspects: dict[str, str] = field(default_factory=dict)  # not sold: quantity moved like a split
    close_workers: int = 0  # symbols closed at once (bounded concurrency)
    fill_listings: int = 0  # listings that looked the run's close fills up (one per pass, not one per order)
    awaiting_fill: list[Any] = field(default_factory=list)  # closes sent, their fills looked up after the batch
    last_close_submitted_s: float | None = None  # from the exits decided to the last close order's answer

    def absorb(self, part: SweepResult) -> None:
        """Add what one worker's closes counted (a result of its own, so no counter is shared across threads)."""
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(part, item.name)
            if isinstance(mine, dict):  # a Counter's update adds the counts
                mine.update(theirs)
            elif isinstance(mine, list):
                mine.extend(theirs)
            elif isinstance(mine, int) and not isinstance(mine, bool) and isinstance(theirs, int):
                setattr(self, item.name, mine + theirs)

    @property
    def flagged_positions(self) -> dict[str, str]:
        """Positions that could not be judged this run: no quote, or a quote that must not be used."""
        flagged = {symbol: "no quote returned by the broker" for symbol in self.missing_quotes}
        flagged.update(self.unusable_quotes)
        return flagged
