"""Checking what a strategy returned, before any of it reaches the risk limits or the broker.

One invalid intent refuses the whole decision (`StrategyFailed`): a strategy that gets one level wrong may
have got the others wrong too, so nothing it proposed that run is traded. Levels are moved onto the price
grid Alpaca accepts (whole cents from $1, 1/100 cent below — it rejects sub-penny prices), towards the ask,
so a rounded stop is never further away than the strategy asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from trading_pipeline.domain.exits import InvalidLevels, PositionView, validate_levels
from trading_pipeline.domain.strategy import EntryIntent, Screened, StrategyFailed, StrategyInputs
from trading_pipeline.domain.types import PositionSide

SUB_DOLLAR_TICK = Decimal("0.0001")
CENT = Decimal("0.01")
MAX_PROBLEMS_SHOWN = 5


@dataclass(frozen=True, slots=True)
class PricedIntent:
    """An intent that passed every check, with its levels on the tick grid and the ask it is sized at."""

    intent: EntryIntent
    price: Decimal

    @property
    def symbol(self) -> str:
        return self.intent.symbol


def tick_for(price: Decimal) -> Decimal:
    return CENT if price >= 1 else SUB_DOLLAR_TICK


def checked_intents(
    output: object, inputs: StrategyInputs, strategy_name: str
) -> tuple[list[PricedIntent], dict[str, str]]:
    """(intents ranked by score, highest first — ties keep the strategy's order; the strategy's own
    rejections). Raises StrategyFailed, naming every problem, when anything returned is not a valid intent."""
    rejected: dict[str, str] = {}
    if isinstance(output, Screened):
        rejected = {str(k): str(v) for k, v in dict(output.rejected).items()}
        output = output.intents
    if isinstance(output, str | bytes) or not isinstance(output, Sequence):
        raise StrategyFailed(
            f"strategy {strategy_name!r} returned a {type(output).__name__}; entry_intents must return a list of "
            "EntryIntent (or a Screened) — fix the strategy; nothing was traded, stop-losses keep running"
        )
    priced: list[PricedIntent] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(output):
        try:
            priced.append(_checked(item, index, inputs, seen))
        except InvalidLevels as exc:
            problems.append(str(exc))
        except (ArithmeticError, TypeError, ValueError) as exc:  # e.g. a level too large to put on the tick grid
            problems.append(f"item {index}: {type(exc).__name__}: {exc}")
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
        more = f" (and {len(problems) - MAX_PROBLEMS_SHOWN} more)" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise StrategyFailed(
            f"strategy {strategy_name!r} returned {len(problems)} invalid intent(s): {shown}{more} — fix the "
            "strategy's entry_intents; nothing was traded, stop-losses keep running"
        )
    priced.sort(key=lambda p: -p.intent.score)
    return priced, rejected


def _checked(item: object, index: int, inputs: StrategyInputs, seen: set[str]) -> PricedIntent:
    if not isinstance(item, EntryIntent):
        raise InvalidLevels(f"item {index} is a {type(item).__name__}, expected an EntryIntent")
    symbol = item.symbol
    if not isinstance(symbol, str) or symbol not in inputs.universe:
        raise InvalidLevels(f"{symbol!r} is not in today's universe sample")
    if symbol in seen:
        raise InvalidLevels(f"{symbol}: proposed twice")
    seen.add(symbol)
    quote = inputs.quotes.get(symbol)
    if quote is None:
        raise InvalidLevels(f"{symbol}: no usable quote today")
    if item.side != PositionSide.LONG:
        raise InvalidLevels(f"{symbol}: side {item.side!r} refused: entries are BUY orders, only long intents")
    for name in ("stop_loss", "take_profit", "qty", "notional", "trailing_stop_pct", "score"):
        _require_exact_number(symbol, name, getattr(item, name), optional=name not in ("stop_loss", "take_profit"))
    if item.qty is not None and item.notional is not None:
        raise InvalidLevels(f"{symbol}: give qty or notional, not both")
    for name in ("qty", "notional"):
        amount = getattr(item, name)
        if amount is not None and not (amount.is_finite() and amount > 0):
            raise InvalidLevels(f"{symbol}: {name} must be above 0, got {amount}")
    if not Decimal(item.score).is_finite():
        raise InvalidLevels(f"{symbol}: score must be a finite number, got {item.score}")
    age = item.max_age_trading_days
    if age is not None and (isinstance(age, bool) or not isinstance(age, int) or age < 1):
        raise InvalidLevels(f"{symbol}: max_age_trading_days must be a whole number of sessions ≥ 1, got {age!r}")
    price = quote.ask
    for name in ("stop_loss", "take_profit"):
        level = Decimal(getattr(item, name))
        if not (level.is_finite() and level > 0):
            raise InvalidLevels(f"{symbol}: {name} must be a price above 0, got {level}")
    stop = Decimal(item.stop_loss).quantize(tick_for(item.stop_loss), rounding=ROUND_CEILING)
    take = Decimal(item.take_profit).quantize(tick_for(item.take_profit), rounding=ROUND_FLOOR)
    trailing = None if item.trailing_stop_pct is None else Decimal(item.trailing_stop_pct)
    view = PositionView(symbol, PositionSide.LONG, Decimal(1), price, inputs.now, stop, take, trailing)
    try:
        validate_levels(view)
    except InvalidLevels as exc:
        raise InvalidLevels(f"{exc} (the entry price is today's ask)") from None
    normalized = replace(
        item,
        stop_loss=stop,
        take_profit=take,
        trailing_stop_pct=trailing,
        qty=None if item.qty is None else Decimal(item.qty),
        notional=None if item.notional is None else Decimal(item.notional),
        score=Decimal(item.score),
    )
    return PricedIntent(normalized, price)


def _require_exact_number(symbol: str, name: str, value: object, *, optional: bool) -> None:
    """Money is Decimal: a float price has already lost its exact value, so it is refused with the fix."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        hint = f" (use Decimal(str({value!r})))" if isinstance(value, float) else ""
        raise InvalidLevels(f"{symbol}: {name} must be a Decimal, got {type(value).__name__} {value!r}{hint}")
