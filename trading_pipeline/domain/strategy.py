"""The entry-strategy protocol: what a strategy is given, what it must return, and how it is made.

A strategy decides which symbols to buy today and where their stop-loss and take-profit sit. Everything
else — sizing within the risk limits, the kill switch, the daily-loss breaker, the orders, the stop-loss
sweep and the broker-side protective orders — is the pipeline's and applies to every strategy alike.

**Inputs** (`StrategyInputs`, built once per `entries` run):
- `universe`: the day's sampled symbols (the `universe` asset), in sample order;
- `quotes`: the latest usable quote of each universe symbol (symbols without one are left out);
- `bars`: daily bars of the `bars_lookback_days` sessions before `trading_date`, oldest first, per symbol —
  requested only when the strategy asks for them (`bars_lookback_days` > 0);
- `positions`: what the pipeline holds or is opening (open and pending trades);
- `account`: buying power, cash and equity at the broker.

**Output**: a sequence of `EntryIntent` (or a `Screened`, which also says why each other symbol was left
out). An intent names a symbol of today's universe, a `stop_loss` below and a `take_profit` above its ask
(Decimal prices), and optionally a `qty` (shares) *or* a `notional` (dollars) — without either, the risk
limits size it — a `trailing_stop_pct`, a `max_age_trading_days`, and a `score` (higher first).

**Making one**: the plug-in is a class (or any callable). If it has a `Params` attribute, a pydantic model
class, the JSON parameters (`TRADING_PIPELINE_STRATEGY_PARAMS` or the run config's `params`) are validated
against it and the validated model is passed as the one argument; without `Params` it is called with none
and takes no parameters. The object it returns has a `name` (at most 64 characters), an optional
`bars_lookback_days` (default 0) and `entry_intents(inputs)`.

A strategy must not talk to the broker or the database, and the same inputs should give the same intents:
that is what makes a run reproducible from its `decision_runs` row. Intents are checked before anything is
sent (`domain/strategy_intents.py`); one invalid intent, or an exception, fails the `entries` step with
nothing traded, while the stop-loss sweeps, which never load the strategy, go on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol, runtime_checkable

from trading_pipeline.domain.exits import PositionView
from trading_pipeline.domain.types import PositionSide, Quote

CENT = Decimal("0.01")
MAX_NAME_LENGTH = 64  # the trades / decision_runs columns that record which strategy opened a position
MAX_BARS_LOOKBACK_DAYS = 260  # about a year of sessions: one daily-bars request per chunk of symbols


class StrategyProblem(ValueError):
    """A strategy that cannot be used: the message is one line naming the problem and the fix."""


class UnknownStrategy(StrategyProblem):
    """No built-in strategy and no entry point of that name."""


class StrategyFailed(StrategyProblem):
    """The strategy raised, or returned something other than valid entry intents, at run time. `details`
    keeps the strategy's own traceback for the run's log: the message itself stays one line."""

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True, slots=True)
class DailyBar:
    """One session's bar; `day` is the session's New York date."""

    day: date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


@dataclass(frozen=True, slots=True)
class AccountView:
    buying_power: Decimal
    cash: Decimal
    equity: Decimal


@dataclass(frozen=True, slots=True)
class StrategyInputs:
    trading_date: date
    now: datetime
    universe: tuple[str, ...]
    quotes: Mapping[str, Quote]
    bars: Mapping[str, tuple[DailyBar, ...]]
    positions: tuple[PositionView, ...]
    account: AccountView

    def closes(self, symbol: str) -> list[Decimal]:
        """Daily closes of `symbol`, oldest first (empty when no bars were asked for or none exist)."""
        return [bar.close for bar in self.bars.get(symbol, ())]

    @property
    def held_symbols(self) -> frozenset[str]:
        return frozenset(position.symbol for position in self.positions)


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryIntent:
    """Buy `symbol` at market with these levels. Prices and amounts are Decimal (or int), never float.

    `qty` (shares) or `notional` (dollars), not both; neither lets the risk limits size the entry. Either
    way the pipeline caps it by the risk limits and buys whole shares (see `domain/risk.py`)."""

    symbol: str
    stop_loss: Decimal
    take_profit: Decimal
    qty: Decimal | None = None
    notional: Decimal | None = None
    trailing_stop_pct: Decimal | None = None
    max_age_trading_days: int | None = None
    score: Decimal = Decimal(0)
    side: PositionSide = PositionSide.LONG  # entries are BUYs: only long intents are accepted


@dataclass(frozen=True, slots=True)
class Screened:
    """What the strategy proposed, and why each other candidate was left out (shown in metadata)."""

    intents: Sequence[EntryIntent]
    rejected: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class EntryStrategy(Protocol):
    name: str
    bars_lookback_days: int

    def entry_intents(self, inputs: StrategyInputs) -> Sequence[EntryIntent] | Screened: ...


def price_level(price: Decimal, pct: Decimal, *, up: bool) -> Decimal:
    factor = 1 + pct / 100 if up else 1 - pct / 100
    return (price * factor).quantize(CENT, rounding=ROUND_HALF_UP)
