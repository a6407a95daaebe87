"""Asking the entry strategy: its inputs gathered (DB first, then the broker), its answer checked.

The strategy is user code. It is called once, with inputs that hold no connection and no client; whatever
it raises or returns that is not a list of valid intents becomes one `StrategyFailed` line, and nothing it
proposed is traded (`domain/strategy_intents.py`).
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import MappingProxyType

from trading_pipeline.broker.base import Account, Bar, Broker
from trading_pipeline.domain.calendar import NEW_YORK, sessions_before
from trading_pipeline.domain.exits import InvalidQuote, validate_quote
from trading_pipeline.domain.strategy import (
    AccountView,
    DailyBar,
    EntryStrategy,
    StrategyFailed,
    StrategyInputs,
)
from trading_pipeline.domain.strategy_intents import PricedIntent, checked_intents
from trading_pipeline.domain.types import Quote
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

MAX_TRACEBACK_CHARS = 8000


@dataclass
class StrategyAnswer:
    intents: list[PricedIntent] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # by the strategy, with its reasons
    unusable_quotes: dict[str, str] = field(default_factory=dict)  # left out of the inputs, with the reason
    bars_requested: int = 0


def gather_inputs(
    db: Database,
    broker: Broker,
    *,
    strategy: EntryStrategy,
    trading_date: date,
    run_id: str | None,
    now: datetime,
    symbols: Sequence[str],
    account: Account,
    held: Sequence[trades_repo.TradeRecord],
    answer: StrategyAnswer,
) -> StrategyInputs:
    """The day's inputs. Quotes: this run's (the `quotes` asset), the rest fetched; unusable ones are left
    out and listed, so a strategy never sees a NaN or crossed price. Bars only when the strategy asks."""
    quotes: dict[str, Quote] = runs_repo.quotes_for_run(db, run_id) if run_id else {}
    missing = [s for s in symbols if s not in quotes]
    if missing:
        quotes.update(broker.latest_quotes(missing).quotes)
    usable: dict[str, Quote] = {}
    for symbol in symbols:
        quote = quotes.get(symbol)
        if quote is None:
            continue
        try:
            validate_quote(quote)
        except InvalidQuote as exc:
            answer.unusable_quotes[symbol] = exc.problem
            continue
        usable[symbol] = quote
    lookback = int(getattr(strategy, "bars_lookback_days", 0) or 0)
    bars: dict[str, tuple[DailyBar, ...]] = {}
    sessions = sessions_before(trading_date, lookback)
    if sessions and usable:
        answer.bars_requested = 1
        bars = _daily_bars(broker.daily_bars(list(usable), sessions[0], sessions[-1]), trading_date, lookback)
    return StrategyInputs(
        trading_date=trading_date,
        now=now,
        universe=tuple(symbols),
        # Read-only views: the intents are priced against these quotes, so the strategy must not edit them.
        quotes=MappingProxyType(usable),
        bars=MappingProxyType(bars),
        positions=tuple(t.position_view() for t in held),
        account=AccountView(buying_power=account.buying_power, cash=account.cash, equity=account.equity),
    )


def _daily_bars(bars: Sequence[Bar], before: date, keep: int) -> dict[str, tuple[DailyBar, ...]]:
    by_symbol: dict[str, dict[date, DailyBar]] = {}
    for bar in bars:
        day = bar.timestamp.astimezone(NEW_YORK).date()
        if day >= before:
            continue  # a strategy deciding at the open must not see today's bar
        by_symbol.setdefault(bar.symbol, {})[day] = DailyBar(day, bar.open, bar.high, bar.low, bar.close, bar.volume)
    return {s: tuple(v for _, v in sorted(days.items()))[-keep:] for s, days in by_symbol.items()}


def ask_strategy(strategy: EntryStrategy, inputs: StrategyInputs, answer: StrategyAnswer) -> None:
    """Call the strategy once and check what it returned; StrategyFailed (one line) on anything else."""
    name = getattr(strategy, "name", "?")
    try:
        output = strategy.entry_intents(inputs)
    except Exception as exc:  # user code: any exception is the strategy's failure, never the pipeline's
        text = " ".join(str(exc).split())[:240]
        raise StrategyFailed(
            f"strategy {name!r} raised {type(exc).__name__}: {text} in entry_intents — fix the strategy (its "
            "traceback is in the run's log); nothing was traded, stop-losses keep running",
            details="".join(traceback.format_exception(exc))[-MAX_TRACEBACK_CHARS:],
        ) from None
    answer.intents, answer.rejected = checked_intents(output, inputs, name)


def open_notional(held: Sequence[trades_repo.TradeRecord]) -> Decimal:
    return sum((t.qty * t.entry_price for t in held), Decimal(0))
