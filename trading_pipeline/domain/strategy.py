"""Entry strategies. The default, `momentum`, is simple, documented and deterministic.

`momentum`: among the day's sampled symbols with a usable quote, keep those whose last `lookback_days`
daily closes rose (close[-1] / close[0] - 1 > min_return), whose spread is at most `max_spread_bps` and
whose price is at least `min_price`; rank by that return (ties by symbol) and propose a long entry at the
ask with a stop-loss `stop_loss_pct` below and a take-profit `take_profit_pct` above. Same inputs → same
entries: no randomness, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from trading_pipeline.domain.exits import InvalidQuote, PositionView, validate_levels, validate_quote
from trading_pipeline.domain.types import PositionSide, Quote

CENT = Decimal("0.01")
BPS = Decimal(10_000)


class UnknownStrategy(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Candidate:
    symbol: str
    quote: Quote
    daily_closes: Sequence[Decimal]  # oldest first


@dataclass(frozen=True, slots=True)
class EntryIntent:
    symbol: str
    side: PositionSide
    reference_price: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    score: Decimal
    trailing_pct: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Screened:
    """What the strategy proposed, and why each other candidate was left out (shown in metadata)."""

    intents: list[EntryIntent]
    rejected: dict[str, str]


class EntryStrategy(Protocol):
    name: str

    def screen(self, candidates: Sequence[Candidate]) -> Screened: ...


def price_level(price: Decimal, pct: Decimal, *, up: bool) -> Decimal:
    factor = 1 + pct / 100 if up else 1 - pct / 100
    return (price * factor).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class MomentumStrategy:
    name: str = "momentum"
    lookback_days: int = 5
    min_return_pct: Decimal = Decimal("0")
    max_spread_bps: Decimal = Decimal("50")
    min_price: Decimal = Decimal("5")
    stop_loss_pct: Decimal = Decimal("3")
    take_profit_pct: Decimal = Decimal("6")
    trailing_stop_pct: Decimal | None = None  # if set, also exit when the bid falls this far below its high

    def __post_init__(self) -> None:
        if self.trailing_stop_pct is not None and not 0 < self.trailing_stop_pct < 100:
            raise ValueError(f"trailing_stop_pct must be between 0 and 100, got {self.trailing_stop_pct}")
        if not 0 < self.stop_loss_pct < 100:
            raise ValueError(f"stop_loss_pct must be between 0 and 100, got {self.stop_loss_pct}")
        if self.take_profit_pct <= 0:
            raise ValueError(f"take_profit_pct must be above 0, got {self.take_profit_pct}")
        if self.lookback_days < 2:
            raise ValueError(f"lookback_days must be at least 2, got {self.lookback_days}")

    def screen(self, candidates: Sequence[Candidate]) -> Screened:
        intents: list[EntryIntent] = []
        rejected: dict[str, str] = {}
        for candidate in candidates:
            reason = self._reject_reason(candidate)
            if reason is not None:
                rejected[candidate.symbol] = reason
                continue
            closes = candidate.daily_closes[-self.lookback_days :]
            score = closes[-1] / closes[0] - 1
            ask = candidate.quote.ask
            intent = EntryIntent(
                symbol=candidate.symbol,
                side=PositionSide.LONG,
                reference_price=ask,
                stop_loss=price_level(ask, self.stop_loss_pct, up=False),
                take_profit=price_level(ask, self.take_profit_pct, up=True),
                score=score,
                trailing_pct=self.trailing_stop_pct,
            )
            validate_levels(
                PositionView(
                    intent.symbol,
                    intent.side,
                    Decimal(1),
                    ask,
                    candidate.quote.timestamp,
                    stop_loss=intent.stop_loss,
                    take_profit=intent.take_profit,
                )
            )
            intents.append(intent)
        intents.sort(key=lambda i: (-i.score, i.symbol))
        return Screened(intents, rejected)

    def _reject_reason(self, candidate: Candidate) -> str | None:
        try:
            validate_quote(candidate.quote)
        except InvalidQuote as exc:
            return exc.problem
        closes = candidate.daily_closes
        if len(closes) < self.lookback_days or any(not c.is_finite() or c <= 0 for c in closes[-self.lookback_days :]):
            return f"needs {self.lookback_days} positive daily closes, has {len(closes)}"
        quote = candidate.quote
        if quote.ask < self.min_price:
            return f"price {quote.ask} below {self.min_price}"
        spread_bps = (quote.ask - quote.bid) / quote.mid * BPS
        if spread_bps > self.max_spread_bps:
            return f"spread {spread_bps:.0f} bps above {self.max_spread_bps}"
        window = closes[-self.lookback_days :]
        if window[-1] / window[0] - 1 <= self.min_return_pct / 100:
            return "no momentum"
        return None


STRATEGIES: Mapping[str, type[MomentumStrategy]] = {"momentum": MomentumStrategy}


def strategy_by_name(name: str, **params: object) -> EntryStrategy:
    try:
        kind = STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise UnknownStrategy(f"unknown strategy {name!r}; known strategies: {known}") from None
    return kind(**params)  # type: ignore[arg-type]
