"""Risk limits applied to every strategy's intents before any order: max open positions, notional per
position, in total and per day, and buying power. Pure: returns sized entries, what was capped, and the
reason for every intent it drops. (The kill switch and the daily-loss breaker act before the strategy is
even asked: see `steps/entries.py`.)

Entries are whole shares. Alpaca takes fractional quantities and `notional` orders only as simple market
or limit DAY orders on fractionable assets, while the pipeline's entries are brackets whose GTC legs must
outlive the day (fractional orders cannot be GTC) — so a strategy's `notional`, or a fractional `qty`, is
turned into whole shares here, which Alpaca accepts for every asset and order class.

Entries are market orders, and Alpaca values a market buy against buying power above the market (its orders
guide, "Buying Power": "In the case of market buy orders, the limit price is 2.5% to 4% above the current
market price"), while the account's `buying_power` is already net of open orders. So entries spend at most
buying power / (1 + MARKET_BUY_COLLAR): an entry sized to the last dollar at the ask would be refused 403.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from trading_pipeline.domain.strategy import EntryIntent
from trading_pipeline.domain.strategy_intents import PricedIntent

MARKET_BUY_COLLAR = Decimal("0.04")  # the top of Alpaca's documented 2.5%-4%


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_open_positions: int = 10
    max_notional_per_position: Decimal = Decimal("5000")
    max_total_notional: Decimal = Decimal("50000")
    max_daily_loss: Decimal | None = None  # realized + unrealized loss today that halts trading
    max_daily_notional: Decimal | None = None  # notional of all entries opened in one session

    def __post_init__(self) -> None:
        for name in ("max_daily_loss", "max_daily_notional"):
            value = getattr(self, name)
            if value is not None and not (value.is_finite() and value > 0):
                raise ValueError(f"{name} must be a positive amount, got {value}")
        if self.max_open_positions < 0:
            raise ValueError(f"max_open_positions must be 0 or more, got {self.max_open_positions}")
        for name in ("max_notional_per_position", "max_total_notional"):
            value = getattr(self, name)
            if not value.is_finite() or value < 0:
                raise ValueError(f"{name} must be a non-negative amount, got {value}")


@dataclass(frozen=True, slots=True)
class SizedEntry:
    priced: PricedIntent
    qty: Decimal

    @property
    def intent(self) -> EntryIntent:
        return self.priced.intent

    @property
    def price(self) -> Decimal:
        return self.priced.price

    @property
    def notional(self) -> Decimal:
        return self.qty * self.priced.price


@dataclass(frozen=True, slots=True)
class Sizing:
    entries: list[SizedEntry]
    dropped: dict[str, str]
    capped: dict[str, str]  # sized below what the strategy asked for, and by which limit


def size_entries(
    intents: Sequence[PricedIntent],
    *,
    limits: RiskLimits,
    buying_power: Decimal,
    open_symbols: Iterable[str],
    open_notional: Decimal = Decimal(0),
    entered_today: Decimal = Decimal(0),
) -> Sizing:
    """Whole-share quantities for the best intents that fit every limit, in the intents' order.

    `open_notional`: what open and pending positions cost; `entered_today`: the notional of this session's
    entries so far (for `max_daily_notional`)."""
    held = set(open_symbols)
    slots = max(0, limits.max_open_positions - len(held))
    budgets = {
        "buying power": buying_power / (1 + MARKET_BUY_COLLAR),
        "max_total_notional": limits.max_total_notional - open_notional,
    }
    if limits.max_daily_notional is not None:
        budgets["max_daily_notional"] = limits.max_daily_notional - entered_today
    entries: list[SizedEntry] = []
    dropped: dict[str, str] = {}
    capped: dict[str, str] = {}
    for priced in intents:
        intent, price = priced.intent, priced.price
        if intent.symbol in held:
            dropped[intent.symbol] = "already holding a position"
            continue
        if len(entries) >= slots:
            dropped[intent.symbol] = f"max open positions ({limits.max_open_positions}) reached"
            continue
        caps = {"max_notional_per_position": limits.max_notional_per_position, **budgets}
        binding, cap = min(caps.items(), key=lambda item: item[1])
        cap = max(Decimal(0), cap)
        asked = _asked_notional(priced)
        qty = (min(asked, cap) / price).to_integral_value(rounding=ROUND_DOWN)
        if intent.qty is not None:
            qty = min(qty, intent.qty.to_integral_value(rounding=ROUND_DOWN))
        if qty < 1:
            dropped[intent.symbol] = _why_no_share(priced, binding, cap)
            continue
        sized = SizedEntry(priced, qty)
        if asked.is_finite() and asked > cap:
            capped[intent.symbol] = f"asked {_asked_text(priced)}, sized {qty} shares by {binding} ({cap:,.2f} left)"
        entries.append(sized)
        for name in budgets:
            budgets[name] -= sized.notional
        held.add(intent.symbol)
    return Sizing(entries, dropped, capped)


def _asked_notional(priced: PricedIntent) -> Decimal:
    intent = priced.intent
    if intent.qty is not None:
        return intent.qty * priced.price
    if intent.notional is not None:
        return intent.notional
    return Decimal("Infinity")  # no size asked: as much as the limits allow


def _asked_text(priced: PricedIntent) -> str:
    intent = priced.intent
    if intent.qty is not None:
        return f"{intent.qty} shares"
    if intent.notional is not None:
        return f"notional {intent.notional:,.2f}"
    return "the maximum"


def _why_no_share(priced: PricedIntent, binding: str, cap: Decimal) -> str:
    intent, price = priced.intent, priced.price
    if intent.qty is not None and intent.qty < 1:
        return f"asked for {intent.qty} shares: entries are whole shares"
    if intent.notional is not None and intent.notional < price:
        return f"notional {intent.notional:,.2f} is below one share at {price}: entries are whole shares"
    return f"{binding} left {cap:,.2f} is below one share at {price}"


def daily_loss_breached(pnl_today: Decimal, limits: RiskLimits) -> bool:
    """True when today's P&L is a loss of at least `max_daily_loss` (never when no limit is set)."""
    return limits.max_daily_loss is not None and pnl_today <= -limits.max_daily_loss
