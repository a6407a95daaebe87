"""Breakout: buy symbols whose ask is above the highest high of the last `lookback_days` sessions.

- stop-loss: `stop_buffer_pct` below that old high (the breakout failed if the price falls back under it),
  but never more than `max_stop_pct` below the ask;
- take-profit: `reward_ratio` times the risk (ask − stop) above the ask;
- size: `notional_per_entry` dollars each (the pipeline caps it by its risk limits and buys whole shares);
- a position still open after `max_age_trading_days` sessions is closed by the stop-loss sweep.

Pure and deterministic: no broker, no database, no clock — everything comes from `inputs`.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel, ConfigDict, Field

from trading_pipeline.domain.strategy import EntryIntent, Screened, StrategyInputs

CENT = Decimal("0.01")


class BreakoutParams(BaseModel):
    """Validated by the pipeline from TRADING_PIPELINE_STRATEGY_PARAMS (JSON) before the strategy is made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback_days: int = Field(10, ge=2, le=120)
    min_price: Decimal = Field(Decimal(5), gt=0)
    max_spread_bps: Decimal = Field(Decimal(40), ge=0)
    stop_buffer_pct: Decimal = Field(Decimal(1), ge=0, lt=50)
    max_stop_pct: Decimal = Field(Decimal(5), gt=0, lt=50)
    reward_ratio: Decimal = Field(Decimal(2), gt=0)
    notional_per_entry: Decimal = Field(Decimal(2000), gt=0)
    max_entries: int = Field(10, ge=0)
    max_age_trading_days: int | None = Field(5, ge=1)
    trailing_stop_pct: Decimal | None = Field(None, gt=0, lt=100)


class BreakoutStrategy:
    Params = BreakoutParams  # the pipeline validates the JSON params against this, then calls BreakoutStrategy(p)
    name = "breakout"

    def __init__(self, params: BreakoutParams) -> None:
        self.params = params

    @property
    def bars_lookback_days(self) -> int:
        return self.params.lookback_days  # the pipeline fetches this many daily bars per symbol

    def entry_intents(self, inputs: StrategyInputs) -> Screened:
        p = self.params
        intents: list[EntryIntent] = []
        rejected: dict[str, str] = {}
        for symbol in inputs.universe:
            quote = inputs.quotes.get(symbol)
            bars = inputs.bars.get(symbol, ())
            if quote is None or symbol in inputs.held_symbols:
                continue
            if len(bars) < p.lookback_days:
                rejected[symbol] = f"{len(bars)} of {p.lookback_days} daily bars"
                continue
            ask, bid = quote.ask, quote.bid
            if ask < p.min_price:
                rejected[symbol] = f"ask {ask} below {p.min_price}"
                continue
            if (ask - bid) / quote.mid * 10_000 > p.max_spread_bps:
                rejected[symbol] = "spread too wide"
                continue
            high = max(bar.high for bar in bars[-p.lookback_days :])
            if ask <= high:
                rejected[symbol] = f"ask {ask} not above the {p.lookback_days}-day high {high}"
                continue
            floor = ask * (1 - p.max_stop_pct / 100)
            stop = _cents(max(high * (1 - p.stop_buffer_pct / 100), floor))
            if stop >= ask:
                rejected[symbol] = "no room for a stop below the ask"
                continue
            intents.append(
                EntryIntent(
                    symbol=symbol,
                    stop_loss=stop,
                    take_profit=_cents(ask + (ask - stop) * p.reward_ratio),
                    notional=p.notional_per_entry,
                    trailing_stop_pct=p.trailing_stop_pct,
                    max_age_trading_days=p.max_age_trading_days,
                    score=ask / high - 1,
                )
            )
        intents.sort(key=lambda i: (-i.score, i.symbol))
        return Screened(intents[: p.max_entries], rejected)


def _cents(price: Decimal) -> Decimal:
    return price.quantize(CENT, rounding=ROUND_HALF_UP)
