"""Plug-in strategies for the tests, selected by import path (`trading_pipeline_tests.strategy_plugins:…`)
exactly as a trader's own package would be."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from trading_pipeline.domain.strategy import EntryIntent, StrategyInputs, price_level

PATH = "trading_pipeline_tests.strategy_plugins"


def long_intent(inputs: StrategyInputs, symbol: str, **fields: object) -> EntryIntent:
    ask = inputs.quotes[symbol].ask
    levels = {"stop_loss": price_level(ask, Decimal(3), up=False), "take_profit": price_level(ask, Decimal(6), up=True)}
    return EntryIntent(symbol=symbol, **{**levels, **fields})  # type: ignore[arg-type]


class GreedyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    qty: Decimal | None = Field(None, gt=0)
    notional: Decimal | None = Field(None, gt=0)


class GreedyStrategy:
    """Wants every symbol it is shown, as much as it may: only the risk limits stand in its way."""

    Params = GreedyParams
    name = "greedy"
    bars_lookback_days = 0
    calls: ClassVar[int] = 0

    def __init__(self, params: GreedyParams) -> None:
        self.params = params

    def entry_intents(self, inputs: StrategyInputs) -> list[EntryIntent]:
        type(self).calls += 1
        return [
            long_intent(inputs, s, qty=self.params.qty, notional=self.params.notional, max_age_trading_days=3)
            for s in sorted(inputs.quotes)
        ]


class RaisingStrategy:
    name = "raising"

    def entry_intents(self, inputs: StrategyInputs) -> list[EntryIntent]:
        raise ZeroDivisionError("my signal divided by zero volume")


class StopAboveAskStrategy:
    name = "stop_above_ask"

    def entry_intents(self, inputs: StrategyInputs) -> list[EntryIntent]:
        first, second = sorted(inputs.quotes)[:2]
        ask = inputs.quotes[first].ask
        return [long_intent(inputs, second), long_intent(inputs, first, stop_loss=ask + 1)]


class NoIntentsMethod:
    name = "no_method"


class TwoArgumentStrategy:
    name = "two_args"

    def entry_intents(self, inputs: StrategyInputs, extra: object) -> list[EntryIntent]:
        return []


class NeedsParamsButNoModel:
    name = "needs_params"

    def __init__(self, params: object) -> None:
        self.params = params

    def entry_intents(self, inputs: StrategyInputs) -> list[EntryIntent]:
        return []


class NamelessStrategy:
    name = ""

    def entry_intents(self, inputs: StrategyInputs) -> list[EntryIntent]:
        return []


class NotAModelParams:
    Params = dict
    name = "dict_params"

    def __init__(self, params: object) -> None:
        self.params = params

    def entry_intents(self, inputs: StrategyInputs) -> list[EntryIntent]:
        return []


NOT_CALLABLE = 42
