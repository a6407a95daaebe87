"""The strategy protocol: momentum on its inputs, the checks every intent passes, and the risk sizing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_pipeline.domain.risk import RiskLimits, size_entries
from trading_pipeline.domain.strategy import (
    AccountView,
    DailyBar,
    EntryIntent,
    Screened,
    StrategyFailed,
    StrategyInputs,
)
from trading_pipeline.domain.strategy_intents import PricedIntent, checked_intents
from trading_pipeline.domain.strategy_momentum import MomentumParams, MomentumStrategy
from trading_pipeline.domain.types import PositionSide, Quote

NOW = datetime(2026, 11, 24, 14, 35, tzinfo=UTC)
DAY = date(2026, 11, 24)
D = Decimal


def inputs(rows: dict[str, tuple[list[str], str, str]], universe: list[str] | None = None) -> StrategyInputs:
    """rows: symbol → (daily closes oldest first, bid, ask)."""
    quotes = {s: Quote(s, D(bid), D(ask), NOW) for s, (_, bid, ask) in rows.items()}
    bars = {
        s: tuple(DailyBar(date(2026, 11, 10 + i), D(c), D(c), D(c), D(c), 1000) for i, c in enumerate(closes))
        for s, (closes, _, _) in rows.items()
    }
    return StrategyInputs(
        trading_date=DAY,
        now=NOW,
        universe=tuple(universe or rows),
        quotes=quotes,
        bars=bars,
        positions=(),
        account=AccountView(D(100000), D(100000), D(100000)),
    )


def test_momentum_ranks_by_momentum_and_sets_levels() -> None:
    screened = MomentumStrategy().entry_intents(
        inputs(
            {
                "SLOW": (["100", "100", "100", "100", "101"], "100", "100.05"),
                "FAST": (["100", "102", "104", "106", "110"], "100", "100.05"),
                "DOWN": (["110", "108", "106", "104", "100"], "100", "100.05"),
            }
        )
    )
    assert [i.symbol for i in screened.intents] == ["FAST", "SLOW"]
    fast = screened.intents[0]
    assert fast.side is PositionSide.LONG and fast.qty is None and fast.notional is None
    assert fast.stop_loss == D("97.05") and fast.take_profit == D("106.05")
    assert screened.rejected == {"DOWN": "no momentum"}


def test_momentum_rejections_say_why() -> None:
    rejected = (
        MomentumStrategy()
        .entry_intents(
            inputs(
                {
                    "WIDE": (["1", "2", "3", "4", "5"], "90", "100"),
                    "CHEAP": (["1", "2", "3", "4", "5"], "2", "2.001"),
                    "NEW": (["1", "2"], "100", "100.05"),
                }
            )
        )
        .rejected
    )
    assert "spread" in rejected["WIDE"] and "below 5" in rejected["CHEAP"] and "needs 5" in rejected["NEW"]


def test_momentum_is_deterministic_and_asks_for_its_lookback_in_bars() -> None:
    rows = {f"S{i}": (["100", str(100 + i % 7), "101", "102", str(103 + i % 5)], "100", "100.05") for i in range(50)}
    forward = MomentumStrategy().entry_intents(inputs(rows))
    backward = MomentumStrategy().entry_intents(inputs(rows, universe=list(reversed(list(rows)))))
    assert forward == backward
    assert MomentumStrategy(MomentumParams(lookback_days=3)).bars_lookback_days == 3


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"stop_loss_pct": -1}, "stop_loss_pct"),
        ({"take_profit_pct": 0}, "take_profit_pct"),
        ({"lookback_days": 1}, "lookback_days"),
    ],
)
def test_momentum_params_are_validated_by_its_schema(params: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        MomentumParams.model_validate(params)


DAY_INPUTS = inputs({"AAA": (["10"], "99.95", "100.00"), "BBB": (["10"], "0.4999", "0.5")})


def intent(symbol: str = "AAA", **fields: object) -> EntryIntent:
    return EntryIntent(**{"symbol": symbol, "stop_loss": D("97"), "take_profit": D("106"), **fields})  # type: ignore[arg-type]


def test_valid_intents_are_priced_at_the_ask_and_ranked_by_score() -> None:
    priced, rejected = checked_intents(
        Screened(
            [intent(score=D(1)), intent("BBB", stop_loss=D("0.45"), take_profit=D("0.6"), score=D(2))], {"X": "y"}
        ),
        DAY_INPUTS,
        "mine",
    )
    assert [(p.symbol, p.price) for p in priced] == [("BBB", D("0.5")), ("AAA", D("100.00"))]
    assert rejected == {"X": "y"}


def test_levels_are_moved_onto_alpacas_tick_grid_towards_the_ask() -> None:
    [aaa, bbb] = checked_intents(
        [
            intent(stop_loss=D("97.001"), take_profit=D("106.009")),
            intent("BBB", stop_loss=D("0.45001"), take_profit=D("0.60009")),
        ],
        DAY_INPUTS,
        "mine",
    )[0]
    assert (aaa.intent.stop_loss, aaa.intent.take_profit) == (D("97.01"), D("106.00"))
    assert (bbb.intent.stop_loss, bbb.intent.take_profit) == (D("0.4501"), D("0.6000"))


INVALID = {
    "not an intent": ({"x": 1}, "expected an EntryIntent"),
    "symbol outside the universe": (intent("ZZZ"), "not in today's universe sample"),
    "stop above the ask": (intent(stop_loss=D("101")), "stop_loss must be below its entry 100.00"),
    "take-profit below the ask": (intent(take_profit=D("99")), "take_profit must be above"),
    "float price": (intent(stop_loss=97.0), "use Decimal(str(97.0))"),
    "qty and notional": (intent(qty=D(1), notional=D(100)), "give qty or notional, not both"),
    "negative qty": (intent(qty=D(-1)), "qty must be above 0"),
    "NaN notional": (intent(notional=D("NaN")), "notional must be above 0"),
    "short": (intent(side=PositionSide.SHORT), "only long intents"),
    "max age 0": (intent(max_age_trading_days=0), "max_age_trading_days"),
    "trailing 100%": (intent(trailing_stop_pct=D(100)), "trailing_pct must be between 0 and 100"),
    "huge stop": (intent(stop_loss=D("1e40")), "item 0"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_one_invalid_intent_refuses_the_whole_decision(case: str) -> None:
    bad, words = INVALID[case]
    with pytest.raises(StrategyFailed, match="nothing was traded") as raised:
        checked_intents([bad, intent("BBB", stop_loss=D("0.45"), take_profit=D("0.6"))], DAY_INPUTS, "mine")
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_duplicates_and_a_wrong_return_type_are_refused() -> None:
    with pytest.raises(StrategyFailed, match="AAA: proposed twice"):
        checked_intents([intent(), intent()], DAY_INPUTS, "mine")
    with pytest.raises(StrategyFailed, match="returned a dict"):
        checked_intents({"AAA": intent()}, DAY_INPUTS, "mine")


def priced(symbol: str, price: str, **fields: object) -> PricedIntent:
    p = D(price)
    return PricedIntent(intent(symbol, stop_loss=p * D("0.97"), take_profit=p * D("1.06"), **fields), p)


def test_sizing_respects_every_limit() -> None:
    limits = RiskLimits(max_open_positions=3, max_notional_per_position=D(1000), max_total_notional=D(2500))
    sizing = size_entries(
        [priced("HELD", "10"), priced("A", "100"), priced("B", "300"), priced("C", "10"), priced("D", "10")],
        limits=limits,
        buying_power=D(100000),
        open_symbols=["HELD"],
    )
    assert [(e.intent.symbol, e.qty) for e in sizing.entries] == [("A", 10), ("B", 3)]
    assert sizing.dropped["HELD"] == "already holding a position"
    assert "max open positions" in sizing.dropped["C"]


def test_a_strategys_qty_and_notional_are_capped_and_made_whole_shares() -> None:
    limits = RiskLimits(max_notional_per_position=D(1000), max_total_notional=D(100000))
    sizing = size_entries(
        [
            priced("BIG", "10", qty=D(1_000_000)),
            priced("SMALL", "10", qty=D("2.5")),
            priced("NOTIONAL", "30", notional=D(100)),
            priced("TINY", "30", notional=D(20)),
            priced("FRACTION", "30", qty=D("0.5")),
        ],
        limits=limits,
        buying_power=D(100000),
        open_symbols=[],
    )
    assert {e.intent.symbol: e.qty for e in sizing.entries} == {"BIG": 100, "SMALL": 2, "NOTIONAL": 3}
    assert "max_notional_per_position" in sizing.capped["BIG"]
    assert "whole shares" in sizing.dropped["TINY"] and "whole shares" in sizing.dropped["FRACTION"]


def test_the_daily_notional_limit_counts_todays_earlier_entries() -> None:
    limits = RiskLimits(max_notional_per_position=D(1000), max_daily_notional=D(1500))
    sizing = size_entries(
        [priced("A", "10"), priced("B", "10")],
        limits=limits,
        buying_power=D(100000),
        open_symbols=[],
        entered_today=D(400),
    )
    assert [(e.intent.symbol, e.qty) for e in sizing.entries] == [("A", 100), ("B", 10)]
    assert sizing.capped == {}  # nothing was asked for: sized to what the limits leave, not "capped"
    with pytest.raises(ValueError, match="max_daily_notional"):
        RiskLimits(max_daily_notional=D(0))


def test_entries_leave_room_for_alpacas_valuation_of_a_market_buy() -> None:
    """Alpaca values a market buy up to 4% above the market against buying power: sized to the last dollar at
    the price, the second entry would be refused 403 "insufficient buying power"."""
    limits = RiskLimits(max_notional_per_position=D(100000), max_total_notional=D(100000))
    sizing = size_entries(
        [priced("A", "100"), priced("B", "100")], limits=limits, buying_power=D(15600), open_symbols=[]
    )
    assert [(e.intent.symbol, e.qty) for e in sizing.entries] == [("A", 150)]
    assert sum(e.qty * e.price * D("1.04") for e in sizing.entries) <= D(15600)


def test_zero_buying_power_sizes_nothing() -> None:
    sizing = size_entries([priced("A", "10")], limits=RiskLimits(), buying_power=D(0), open_symbols=[])
    assert sizing.entries == [] and "below one share" in sizing.dropped["A"]


@given(
    st.lists(st.decimals(min_value=D("0.5"), max_value=D(2000), places=2), min_size=0, max_size=20),
    st.lists(st.one_of(st.none(), st.decimals(min_value=D("0.01"), max_value=D(10**7), places=2)), max_size=20),
    st.decimals(min_value=0, max_value=D(100000), places=2),
    st.integers(0, 10),
    st.decimals(min_value=D(1), max_value=D(30000), places=2),
)
def test_sizing_never_exceeds_any_budget_or_slot(
    prices: list[Decimal], asks: list[Decimal | None], buying_power: Decimal, slots: int, daily: Decimal
) -> None:
    limits = RiskLimits(
        max_open_positions=slots,
        max_notional_per_position=D(3000),
        max_total_notional=D(20000),
        max_daily_notional=daily,
    )
    intents = [priced(f"S{i}", str(p), notional=asks[i] if i < len(asks) else None) for i, p in enumerate(prices)]
    sizing = size_entries(intents, limits=limits, buying_power=buying_power, open_symbols=[])
    total = sum((e.notional for e in sizing.entries), D(0))
    assert total <= min(buying_power, limits.max_total_notional, daily)
    assert len(sizing.entries) <= slots
    assert all(e.qty >= 1 and e.qty == e.qty.to_integral_value() for e in sizing.entries)
    assert all(e.notional <= limits.max_notional_per_position for e in sizing.entries)
    assert all(e.intent.notional is None or e.notional <= e.intent.notional for e in sizing.entries)
    assert len(sizing.entries) + len(sizing.dropped) == len(intents)


def test_negative_limits_refused() -> None:
    with pytest.raises(ValueError, match="max_notional_per_position"):
        RiskLimits(max_notional_per_position=D(-1))
