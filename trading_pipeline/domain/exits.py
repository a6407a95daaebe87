"""Exit decisions: stop-loss, take-profit, trailing stop and max-age, for long and short positions.

Pure and bid/ask aware: a long closes by selling, so it is judged against the bid; a short closes by
buying, so it is judged against the ask. A quote that cannot be trusted (NaN, zero, negative, crossed,
stale, another symbol's) raises `InvalidQuote` instead of deciding on it: deciding on a bad price is
how a stop fires on a glitch or, worse, never fires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from trading_pipeline.domain.types import ExitReason, PositionSide, Quote

HUNDRED = Decimal(100)


class InvalidQuote(ValueError):
    """A quote that must not be used for a decision; the message says what is wrong with it."""

    def __init__(self, symbol: str, problem: str) -> None:
        super().__init__(f"quote for {symbol} unusable: {problem}")
        self.symbol = symbol
        self.problem = problem


class InvalidLevels(ValueError):
    """Position levels that contradict each other (e.g. a long's stop above its entry)."""


@dataclass(frozen=True, slots=True)
class PositionView:
    """What the exit rules need to know about an open position."""

    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    opened_at: datetime
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_pct: Decimal | None = None
    high_water_mark: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """Close the position because of `reason`; `reference_price` is the quote side it would close at,
    `trigger_price` the level that was crossed (None for max-age)."""

    reason: ExitReason
    reference_price: Decimal
    trigger_price: Decimal | None = None


def _is_finite_positive(value: Decimal) -> bool:
    return value.is_finite() and value > 0


def validate_quote(quote: Quote, *, now: datetime | None = None, max_age: timedelta | None = None) -> None:
    """Raise InvalidQuote unless the quote is finite, positive, not crossed and (optionally) fresh."""
    for name, price in (("bid", quote.bid), ("ask", quote.ask)):
        if not isinstance(price, Decimal):
            raise InvalidQuote(quote.symbol, f"{name} is {type(price).__name__}, expected Decimal")
        if price.is_nan():
            raise InvalidQuote(quote.symbol, f"{name} is NaN")
        if not _is_finite_positive(price):
            raise InvalidQuote(quote.symbol, f"{name} is {price}, must be a finite price above 0")
    if quote.bid > quote.ask:
        raise InvalidQuote(quote.symbol, f"crossed: bid {quote.bid} > ask {quote.ask}")
    if quote.timestamp.tzinfo is None:
        raise InvalidQuote(quote.symbol, "timestamp has no timezone")
    if now is not None and max_age is not None:
        age = now - quote.timestamp
        if age > max_age:
            raise InvalidQuote(
                quote.symbol, f"stale: {age.total_seconds():.0f}s old, limit {max_age.total_seconds():.0f}s"
            )


def validate_levels(position: PositionView) -> None:
    """Raise InvalidLevels when quantities or levels contradict the side of the position."""
    if not (position.qty.is_finite() and position.qty > 0):
        raise InvalidLevels(f"{position.symbol}: qty must be above 0, got {position.qty}")
    if not _is_finite_positive(position.entry_price):
        raise InvalidLevels(f"{position.symbol}: entry price must be above 0, got {position.entry_price}")
    for name, level in (("stop_loss", position.stop_loss), ("take_profit", position.take_profit)):
        if level is not None and not _is_finite_positive(level):
            raise InvalidLevels(f"{position.symbol}: {name} must be a price above 0, got {level}")
    if position.trailing_pct is not None and not (0 < position.trailing_pct < HUNDRED):
        raise InvalidLevels(f"{position.symbol}: trailing_pct must be between 0 and 100, got {position.trailing_pct}")
    long = position.side is PositionSide.LONG
    word = "below" if long else "above"
    if position.stop_loss is not None and (
        position.stop_loss >= position.entry_price if long else position.stop_loss <= position.entry_price
    ):
        raise InvalidLevels(
            f"{position.symbol}: a {position.side.value}'s stop_loss must be {word} its entry "
            f"{position.entry_price}, got {position.stop_loss}"
        )
    other = "above" if long else "below"
    if position.take_profit is not None and (
        position.take_profit <= position.entry_price if long else position.take_profit >= position.entry_price
    ):
        raise InvalidLevels(
            f"{position.symbol}: a {position.side.value}'s take_profit must be {other} its entry "
            f"{position.entry_price}, got {position.take_profit}"
        )


def closing_price(side: PositionSide, quote: Quote) -> Decimal:
    """The side of the book a position closes against: bid for a long, ask for a short."""
    return quote.bid if side is PositionSide.LONG else quote.ask


def next_high_water_mark(position: PositionView, quote: Quote) -> Decimal:
    """Best closing price seen so far: the highest bid for a long, the lowest ask for a short.

    It only ratchets in the position's favour; it never moves back.
    """
    price = closing_price(position.side, quote)
    previous = position.high_water_mark if position.high_water_mark is not None else position.entry_price
    return max(previous, price) if position.side is PositionSide.LONG else min(previous, price)


def trailing_stop_level(side: PositionSide, high_water_mark: Decimal, trailing_pct: Decimal) -> Decimal:
    fraction = trailing_pct / HUNDRED
    return high_water_mark * (1 - fraction) if side is PositionSide.LONG else high_water_mark * (1 + fraction)


def decide_exit(
    position: PositionView,
    quote: Quote,
    *,
    now: datetime | None = None,
    max_quote_age: timedelta | None = None,
    trading_days_held: int | None = None,
    max_age_trading_days: int | None = None,
) -> ExitDecision | None:
    """Decide whether `position` must be closed at `quote`; None means keep it open.

    Precedence when several rules fire: stop-loss (the loss cap) before trailing stop before take-profit
    before max age, so the reason recorded is the most protective one.
    """
    if quote.symbol != position.symbol:
        raise InvalidQuote(quote.symbol, f"is for {quote.symbol}, position is {position.symbol}")
    validate_quote(quote, now=now, max_age=max_quote_age)
    price = closing_price(position.side, quote)
    long = position.side is PositionSide.LONG

    def crossed_against(level: Decimal) -> bool:
        return price <= level if long else price >= level

    def crossed_in_favour(level: Decimal) -> bool:
        return price >= level if long else price <= level

    if position.stop_loss is not None and crossed_against(position.stop_loss):
        return ExitDecision(ExitReason.STOP_LOSS, price, position.stop_loss)
    if position.trailing_pct is not None:
        level = trailing_stop_level(position.side, next_high_water_mark(position, quote), position.trailing_pct)
        if crossed_against(level):
            return ExitDecision(ExitReason.TRAILING_STOP, price, level)
    if position.take_profit is not None and crossed_in_favour(position.take_profit):
        return ExitDecision(ExitReason.TAKE_PROFIT, price, position.take_profit)
    if max_age_trading_days is not None and trading_days_held is not None and trading_days_held >= max_age_trading_days:
        return ExitDecision(ExitReason.MAX_AGE, price, None)
    return None


# The broker-side stop follows the trailing level in steps of at least this fraction of the price, so a rising
# price costs a replace (PATCH) now and then, not one per run, while protection lags the level by at most this.
BROKER_STOP_STEP = Decimal("0.0025")


def broker_stop_level(position: PositionView) -> Decimal | None:
    """Where the broker's own stop should sit: the fixed stop, raised (lowered for a short) to the trailing
    level at the best price seen so far, to the tick Alpaca accepts (rounded toward the position's favour so it
    never sits beyond the level the pipeline itself would sell at)."""
    stop = position.stop_loss
    if position.trailing_pct is None or position.high_water_mark is None:
        return stop
    long = position.side is PositionSide.LONG
    trail = trailing_stop_level(position.side, position.high_water_mark, position.trailing_pct)
    tick = Decimal("0.01") if trail >= 1 else Decimal("0.0001")
    trail = trail.quantize(tick, rounding=ROUND_DOWN if long else ROUND_UP)
    if stop is None:
        return trail
    return max(stop, trail) if long else min(stop, trail)


def broker_stop_is_current(position: PositionView, leg_stop: Decimal | None) -> bool:
    """A broker stop leg at `leg_stop` protects at the level the position should have: exactly its stop, or for
    a trailing position within `BROKER_STOP_STEP` behind the trailing level (never beyond it)."""
    wanted = broker_stop_level(position)
    if wanted is None or leg_stop is None:
        return wanted == leg_stop
    if position.trailing_pct is None:
        return leg_stop == wanted
    slack = wanted * BROKER_STOP_STEP
    if position.side is PositionSide.LONG:
        return wanted - slack <= leg_stop <= wanted
    return wanted <= leg_stop <= wanted + slack
