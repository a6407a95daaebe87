"""The default momentum strategy and the risk sizing: deterministic, documented, within limits."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_pipeline.domain.risk import RiskLimits, size_entries
from trading_pipeline.domain.strategy import (
    Candidate,
    EntryIntent,
    MomentumStrategy,
    UnknownStrategy,
    strategy_by_name,
)
from trading_pipeline.domain.types import PositionSide, Quote

NOW = datetime(2026, 11, 24, 14, 35, tzinfo=UTC)
D = Decimal


def candidate(symbol: str, closes: list[str], bid: str = "100", ask: str = "100.05") -> Candidate:
    return Candidate(symbol, Quote(symbol, D(bid), D(ask), NOW), [D(c) for c in closes])


def test_ranks_by_momentum_and_sets_levels() -> None:
    screened = MomentumStrategy().screen(
        [
            candidate("SLOW", ["100", "100", "100", "100", "101"]),
            candidate("FAST", ["100", "102", "104", "106", "110"]),
            candidate("DOWN", ["110", "108", "106", "104", "100"]),
        ]
    )
    assert [i.symbol for i in screened.intents] == ["FAST", "SLOW"]
    fast = screened.intents[0]
    assert fast.side is PositionSide.LONG and fast.reference_price == D("100.05")
    assert fast.stop_loss == D("97.05") and fast.take_profit == D("106.05")
    assert screened.rejected == {"DOWN": "no momentum"}


def test_rejections_say_why() -> None:
    rejected = MomentumStrategy().screen(
        [
            candidate("WIDE", ["1", "2", "3", "4", "5"], bid="90", ask="100"),
            candidate("CHEAP", ["1", "2", "3", "4", "5"], bid="2", ask="2.001"),
            candidate("NEW", ["1", "2"]),
            candidate("BAD", ["1", "2", "3", "4", "5"], bid="0", ask="10"),
        ]
    ).rejected
    assert "spread" in rejected["WIDE"] and "below 5" in rejected["CHEAP"]
    assert "needs 5" in rejected["NEW"] and "above 0" in rejected["BAD"]


def test_deterministic() -> None:
    pool = [candidate(f"S{i}", ["100", str(100 + i % 7), "101", "102", str(103 + i % 5)]) for i in range(50)]
    assert MomentumStrategy().screen(pool) == MomentumStrategy().screen(list(reversed(pool)))


def test_strategy_registry_and_bad_params() -> None:
    assert strategy_by_name("momentum").name == "momentum"
    with pytest.raises(UnknownStrategy, match="unknown strategy 'yolo'; known strategies: momentum"):
        strategy_by_name("yolo")
    with pytest.raises(ValueError, match="stop_loss_pct"):
        MomentumStrategy(stop_loss_pct=D(-1))
    with pytest.raises(ValueError, match="take_profit_pct"):
        MomentumStrategy(take_profit_pct=D(0))


def intent(symbol: str, price: str) -> EntryIntent:
    p = D(price)
    return EntryIntent(symbol, PositionSide.LONG, p, p * D("0.97"), p * D("1.06"), D("0.1"))


def test_sizing_respects_every_limit() -> None:
    limits = RiskLimits(max_open_positions=3, max_notional_per_position=D(1000), max_total_notional=D(2500))
    sizing = size_entries(
        [intent("HELD", "10"), intent("A", "100"), intent("B", "300"), intent("C", "10"), intent("D", "10")],
        limits=limits,
        buying_power=D(100000),
        open_symbols=["HELD"],
    )
    assert [(e.intent.symbol, e.qty) for e in sizing.entries] == [("A", 10), ("B", 3)]
    assert sizing.dropped["HELD"] == "already holding a position"
    assert "max open positions" in sizing.dropped["C"]


def test_zero_buying_power_sizes_nothing() -> None:
    sizing = size_entries([intent("A", "10")], limits=RiskLimits(), buying_power=D(0), open_symbols=[])
    assert sizing.entries == [] and "below one share" in sizing.dropped["A"]


@given(
    st.lists(st.decimals(min_value=D("0.5"), max_value=D(2000), places=2), min_size=0, max_size=20),
    st.decimals(min_value=0, max_value=D(100000), places=2),
    st.integers(0, 10),
)
def test_sizing_never_exceeds_budget_or_slots(prices: list[Decimal], buying_power: Decimal, slots: int) -> None:
    limits = RiskLimits(max_open_positions=slots, max_notional_per_position=D(3000), max_total_notional=D(20000))
    intents = [intent(f"S{i}", str(p)) for i, p in enumerate(prices)]
    sizing = size_entries(intents, limits=limits, buying_power=buying_power, open_symbols=[])
    total = sum((e.notional for e in sizing.entries), D(0))
    assert total <= min(buying_power, limits.max_total_notional)
    assert len(sizing.entries) <= slots
    assert all(e.qty >= 1 and e.notional <= limits.max_notional_per_position for e in sizing.entries)
    assert len(sizing.entries) + len(sizing.dropped) == len(intents)


def test_negative_limits_refused() -> None:
    with pytest.raises(ValueError, match="max_notional_per_position"):
        RiskLimits(max_notional_per_position=D(-1))
