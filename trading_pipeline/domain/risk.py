"""Risk limits applied to entry intents before any order: max positions, notional per position,
buying power. Pure: returns sized entries and the reason for every intent it drops."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from trading_pipeline.domain.strategy import EntryIntent


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_open_positions: int = 10
    max_notional_per_position: Decimal = Decimal("5000")
    max_total_notional: Decimal = Decimal("50000")
    max_daily_loss: Decimal | None = None  # realized + unrealized loss today that halts trading

    def __post_init__(self) -> None:
        if self.max_daily_loss is not None and not (self.max_daily_loss.is_finite() and self.max_daily_loss > 0):
            raise ValueError(f"max_daily_loss must be a positive amount, got {self.max_daily_loss}")
        if self.max_open_positions < 0:
            raise ValueError(f"max_open_positions must be 0 or more, got {self.max_open_positions}")
        for name in ("max_notional_per_position", "max_total_notional"):
            value = getattr(self, name)
            if not value.is_finite() or value < 0:
                raise ValueError(f"{name} must be a non-negative amount, got {value}")


@dataclass(frozen=True, slots=True)
class SizedEntry:
    intent: EntryIntent
    qty: Decimal

    @property
    def notional(self) -> Decimal:
        return self.qty * self.intent.reference_price


@dataclass(frozen=True, slots=True)
class Sizing:
    entries: list[SizedEntry]
    dropped: dict[str, str]


def size_entries(
    intents: Sequence[EntryIntent],
    *,
    limits: RiskLimits,
    buying_power: Decimal,
    open_symbols: Iterable[str],
    open_notional: Decimal = Decimal(0),
) -> Sizing:
    """Whole-share quantities for the best intents that fit every limit, in the intents' order."""
    held = set(open_symbols)
    slots = max(0, limits.max_open_positions - len(held))
    budget = max(Decimal(0), min(buying_power, limits.max_total_notional - open_notional))
    entries: list[SizedEntry] = []
    dropped: dict[str, str] = {}
    for intent in intents:
        if intent.symbol in held:
            dropped[intent.symbol] = "already holding a position"
            continue
        if len(entries) >= slots:
            dropped[intent.symbol] = f"max open positions ({limits.max_open_positions}) reached"
            continue
        notional = min(limits.max_notional_per_position, budget)
        qty = (notional / intent.reference_price).to_integral_value(rounding=ROUND_DOWN)
        if qty < 1:
            dropped[intent.symbol] = f"buying power left {budget:.2f} is below one share at {intent.reference_price}"
            continue
        sized = SizedEntry(intent, qty)
        entries.append(sized)
        budget -= sized.notional
        held.add(intent.symbol)
    return Sizing(entries, dropped)


def daily_loss_breached(pnl_today: Decimal, limits: RiskLimits) -> bool:
    """True when today's P&L is a loss of at least `max_daily_loss` (never when no limit is set)."""
    return limits.max_daily_loss is not None and pnl_today <= -limits.max_daily_loss
