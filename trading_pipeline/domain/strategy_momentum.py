"""`momentum`, the built-in default strategy: simple, documented and deterministic.

Among the day's sampled symbols with a usable quote, keep those whose last `lookback_days` daily closes
rose (close[-1] / close[0] - 1 > min_return_pct %), whose spread is at most `max_spread_bps` and whose
price is at least `min_price`; rank by that return (ties by symbol) and propose a long entry at the ask with
a stop-loss `stop_loss_pct` below and a take-profit `take_profit_pct` above. Same inputs → same entries: no
randomness, no clock. It is also the reference implementation of the protocol in `domain/strategy.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from trading_pipeline.domain.strategy import EntryIntent, Screened, StrategyInputs, price_level
from trading_pipeline.domain.types import Quote

BPS = Decimal(10_000)


class MomentumParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback_days: int = Field(5, ge=2, le=60, description="daily closes the return is measured over")
    min_return_pct: Decimal = Field(Decimal(0), description="return over the lookback a candidate must beat, %")
    max_spread_bps: Decimal = Field(Decimal(50), ge=0, description="widest bid/ask spread accepted, bps of mid")
    min_price: Decimal = Field(Decimal(5), gt=0, description="cheapest ask accepted")
    stop_loss_pct: Decimal = Field(Decimal(3), gt=0, lt=100, description="stop-loss below the ask, %")
    take_profit_pct: Decimal = Field(Decimal(6), gt=0, description="take-profit above the ask, %")
    trailing_stop_pct: Decimal | None = Field(None, gt=0, lt=100, description="exit this far below the high, %")


class MomentumStrategy:
    Params = MomentumParams
    name = "momentum"

    def __init__(self, params: MomentumParams | None = None) -> None:
        self.params = params or MomentumParams()

    @property
    def bars_lookback_days(self) -> int:
        return self.params.lookback_days

    def entry_intents(self, inputs: StrategyInputs) -> Screened:
        intents: list[EntryIntent] = []
        rejected: dict[str, str] = {}
        p = self.params
        for symbol in inputs.universe:
            quote = inputs.quotes.get(symbol)
            if quote is None:
                continue  # no usable quote: the pipeline lists it already
            closes = inputs.closes(symbol)
            reason = self.reject_reason(quote, closes)
            if reason is not None:
                rejected[symbol] = reason
                continue
            window = closes[-p.lookback_days :]
            intents.append(
                EntryIntent(
                    symbol=symbol,
                    stop_loss=price_level(quote.ask, p.stop_loss_pct, up=False),
                    take_profit=price_level(quote.ask, p.take_profit_pct, up=True),
                    trailing_stop_pct=p.trailing_stop_pct,
                    score=window[-1] / window[0] - 1,
                )
            )
        intents.sort(key=lambda i: (-i.score, i.symbol))
        return Screened(intents, rejected)

    def reject_reason(self, quote: Quote, closes: Sequence[Decimal]) -> str | None:
        p = self.params
        window = closes[-p.lookback_days :]
        if len(closes) < p.lookback_days or any(not c.is_finite() or c <= 0 for c in window):
            return f"needs {p.lookback_days} positive daily closes, has {len(closes)}"
        if quote.ask < p.min_price:
            return f"price {quote.ask} below {p.min_price}"
        spread_bps = (quote.ask - quote.bid) / quote.mid * BPS
        if spread_bps > p.max_spread_bps:
            return f"spread {spread_bps:.0f} bps above {p.max_spread_bps}"
        if window[-1] / window[0] - 1 <= p.min_return_pct / 100:
            return "no momentum"
        return None
