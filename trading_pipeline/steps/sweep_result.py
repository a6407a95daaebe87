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
    drift_repaired: dict[str, str] = field(default_factory=dict)
    holding_orders_cancelled: int = 0
    outside_orders_cancelled: list[str] = field(default_factory=list)  # orders the pipeline did not place
    book_problems: dict[str, str] = field(default_factory=dict)
    split_suspects: dict[str, str] = field(default_factory=dict)  # not sold: quantity moved like a split
    close_workers: int = 0  # symbols closed at once (bounded concurrency)
    fill_listings: int = 0  # listings that looked the run's close fills up (one per pass, not one per order)
    awaiting_fill: list[Any] = field(default_factory=list)  # closes sent, their fills looked up after the batch
    last_close_submitted_s: float | None = None  # from the exits decided to the last close order's answer
    # Exits decided while the broker's clock is closed: no market order is queued (Alpaca would hold it to the
    # next session, silently); each stays beyond its stop, reported, until the first run after the open.
    waiting_for_open: dict[str, str] = field(default_factory=dict)
    # Exits the broker refused for a lasting reason (PDT, not tradable, account blocked), or not re-sent yet
    # because such a refusal is recent: symbol → the broker's words, when it is tried again, what to do.
    refused: dict[str, str] = field(default_factory=dict)
    new_refusals: dict[str, str] = field(default_factory=dict)  # refused for the first time: alert a person
    refusals_cleared: list[str] = field(default_factory=list)  # refused before, accepted now: recovered
    refusals_to_record: list[Any] = field(default_factory=list)  # (trade, OrderRejected, Refusal) to store
    # Closes sent while the broker's positions could not be read: sized to the DB's quantity (every read that
    # works cuts it to what the broker holds), relying on Alpaca's 403 for selling more than is held.
    blind_closes: dict[str, str] = field(default_factory=dict)

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
