"""The example strategy on hand-made inputs, checked the way the pipeline checks every strategy."""

from __future__ import annotations

import importlib.metadata
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from tp_breakout import BreakoutParams, BreakoutStrategy

from trading_pipeline.domain.strategy import AccountView, DailyBar, StrategyInputs, StrategyProblem
from trading_pipeline.domain.strategy_intents import checked_intents
from trading_pipeline.domain.types import Quote
from trading_pipeline.resources.strategy_loading import load_strategy

D = Decimal
NOW = datetime(2026, 11, 24, 14, 31, tzinfo=UTC)


def inputs(rows: dict[str, tuple[list[str], str, str]]) -> StrategyInputs:
    """rows: symbol → (daily highs oldest first, bid, ask)."""
    bars = {
        s: tuple(
            DailyBar(date(2026, 11, 1) + timedelta(days=i), D(h), D(h), D(h) - 1, D(h), 10_000)
            for i, h in enumerate(highs)
        )
        for s, (highs, _, _) in rows.items()
    }
    return StrategyInputs(
        trading_date=date(2026, 11, 24),
        now=NOW,
        universe=tuple(rows),
        quotes={s: Quote(s, D(bid), D(ask), NOW) for s, (_, bid, ask) in rows.items()},
        bars=bars,
        positions=(),
        account=AccountView(D(100_000), D(100_000), D(100_000)),
    )


DAY = inputs(
    {
        "UP": (["40", "41", "42"], "43.98", "44.00"),  # 4.8% above its 3-day high
        "EDGE": (["40", "41", "42"], "42.09", "42.10"),  # just above
        "FLAT": (["40", "41", "42"], "41.49", "41.50"),  # below the high
        "SHORTHIST": (["40"], "50.00", "50.02"),
    }
)


def test_buys_breakouts_strongest_first_with_levels_from_the_old_high() -> None:
    screened = BreakoutStrategy(BreakoutParams(lookback_days=3)).entry_intents(DAY)
    assert [i.symbol for i in screened.intents] == ["UP", "EDGE"]
    up = screened.intents[0]
    assert up.stop_loss == D("41.80")  # max(42 × 0.99 = 41.58, 44 × 0.95 = 41.80)
    assert up.take_profit == D("48.40")  # 44 + 2 × (44 − 41.80)
    assert up.notional == D(2000) and up.qty is None and up.max_age_trading_days == 5
    assert "not above" in screened.rejected["FLAT"] and "1 of 3" in screened.rejected["SHORTHIST"]


def test_its_intents_pass_the_pipelines_checks() -> None:
    screened = BreakoutStrategy(BreakoutParams(lookback_days=3)).entry_intents(DAY)
    priced, _ = checked_intents(screened, DAY, "breakout")
    assert [p.price for p in priced] == [D("44.00"), D("42.10")]


def test_the_pipeline_loads_it_and_validates_its_params() -> None:
    loaded = load_strategy("tp_breakout.strategy:BreakoutStrategy", '{"lookback_days": 3, "max_entries": 1}')
    assert loaded.strategy.name == "breakout" and loaded.strategy.bars_lookback_days == 3
    assert [i.symbol for i in loaded.strategy.entry_intents(DAY).intents] == ["UP"]
    with pytest.raises(StrategyProblem, match="reward_ratio: Input should be greater than 0"):
        load_strategy("tp_breakout.strategy:BreakoutStrategy", '{"reward_ratio": -1}')


def test_the_entry_point_names_it_once_installed() -> None:
    points = [
        ep for ep in importlib.metadata.entry_points(group="trading_pipeline.strategies") if ep.name == "breakout"
    ]
    if not points:
        pytest.skip("tp-breakout-strategy is not installed (pip install -e examples/breakout_strategy)")
    assert points[0].value == "tp_breakout.strategy:BreakoutStrategy"
    assert load_strategy("breakout").selection.source.startswith("entry point of tp-breakout-strategy")
