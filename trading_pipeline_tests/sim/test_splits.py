"""The sim's stock splits: applied at the ex-date's beginning-of-day process, positions, prices and open orders
re-based as Alpaca documents, and `GET /v1/corporate-actions` parsed by alpaca-py's own client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import requests
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.models.corporate_actions import ForwardSplit, ReverseSplit
from alpaca.data.requests import CorporateActionsRequest

from trading_pipeline.sim.market import Market
from trading_pipeline.sim.server import SimBroker
from trading_pipeline_tests.sim_fixtures import (
    SESSION_START,
    TEST_KEY_ID,
    TEST_SECRET,
    running_sim,
    tradable_symbols,
    trading_headers,
)

EX_DATE = date(2026, 11, 25)
BEFORE_BOD = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # 07:00 New York
AFTER_BOD = datetime(2026, 11, 25, 12, 45, tzinfo=UTC)  # 07:45 New York, market still closed
AFTER_OPEN = datetime(2026, 11, 25, 14, 31, tzinfo=UTC)


def market_with(symbol_qty: int = 135) -> tuple[Market, str]:
    market = Market(seed=7, n_symbols=200, start=SESSION_START)
    symbol = tradable_symbols(market, 1)[0]
    market.submit_order({"symbol": symbol, "qty": symbol_qty, "side": "buy", "type": "market", "time_in_force": "day"})
    return market, symbol


def test_a_forward_split_applies_at_the_ex_dates_beginning_of_day_not_before() -> None:
    market, symbol = market_with(135)
    position = market.book.positions[symbol]
    basis = position.qty * position.avg_entry_price
    market.split(symbol, 2, 1, EX_DATE)
    market.advance_to(BEFORE_BOD)
    assert position.qty == 135  # announced, not applied yet
    close = market.quote(symbol)
    market.advance_to(AFTER_BOD)
    assert position.qty == 270 and position.qty * position.avg_entry_price == basis
    after = market.quote(symbol)
    assert abs(after.bid * 2 - close.bid) <= Decimal("0.02")  # re-based, to the tick
    bars = market.daily_bars([symbol], date(2026, 11, 24), date(2026, 11, 24))[symbol]
    assert abs(bars[0].close - (close.bid + close.ask) / 2) < Decimal("0.05")  # the past stays raw


def test_a_reverse_split_floors_whole_shares_and_pays_the_fraction_in_cash() -> None:
    market, symbol = market_with(103)
    cash = market.book.cash
    split = market.split(symbol, 1, 5)  # at once
    assert split.applied and market.book.positions[symbol].qty == 20
    assert split.cash_in_lieu == (Decimal("0.6") * market.last_price(symbol)).quantize(Decimal("0.01"))
    assert market.book.cash - cash == split.cash_in_lieu


def test_bracket_legs_are_left_as_they_are_and_gtc_limits_are_rebased() -> None:
    """trading/orders.md: bracket orders carry DNR/DNC; the OpenAPI spec: non-marketable GTC limits are adjusted."""
    market = Market(seed=7, n_symbols=200, start=SESSION_START)
    symbol = tradable_symbols(market, 1)[0]
    price = market.last_price(symbol)
    entry = market.submit_order(
        {
            "symbol": symbol,
            "qty": 100,
            "side": "buy",
            "type": "market",
            "time_in_force": "gtc",
            "order_class": "bracket",
            "take_profit": {"limit_price": str((price * Decimal("1.5")).quantize(Decimal("0.01")))},
            "stop_loss": {"stop_price": str((price * Decimal("0.7")).quantize(Decimal("0.01")))},
        }
    )
    legs = market.book.legs(entry)
    levels = [(leg.qty, leg.limit_price, leg.stop_price) for leg in legs]
    resting = market.submit_order(
        {
            "symbol": symbol,
            "qty": 10,
            "side": "buy",
            "type": "limit",
            "limit_price": str((price * Decimal("0.5")).quantize(Decimal("0.01"))),
            "time_in_force": "gtc",
        }
    )
    limit = resting.limit_price
    market.split(symbol, 2, 1, EX_DATE)
    market.advance_to(AFTER_BOD)
    assert [(leg.qty, leg.limit_price, leg.stop_price) for leg in legs] == levels  # DNR/DNC
    assert resting.qty == 20 and resting.limit_price == (limit / 2).quantize(Decimal("0.01"))
    market.advance_to(AFTER_OPEN)
    # The stale stop leg (70 % of the old price, ~140 % of the new one) fires at the open: what a client must
    # replace before the open.
    stop_leg = next(leg for leg in legs if leg.stop_price is not None)
    assert stop_leg.status == "filled" and market.book.positions[symbol].qty == 100


def test_split_arguments_are_validated() -> None:
    market, symbol = market_with(10)
    for bad in ((0, 1), (-2, 1), (1, 1), ("x", 1)):
        with pytest.raises(ValueError):
            market.split(symbol, *bad)
    with pytest.raises(ValueError):
        market.split(symbol, 2, 1, date(2026, 11, 23))  # the past
    with pytest.raises(KeyError):
        market.split("NOPE", 2, 1)


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def test_corporate_actions_endpoint_parses_with_alpaca_py(sim: SimBroker) -> None:
    a, b, c = tradable_symbols(sim.market, 3)
    post = requests.post(
        f"{sim.url}/_sim/split", json={"symbol": a, "new_rate": 2, "old_rate": 1, "ex_date": "2026-11-25"}
    )
    assert post.status_code == 200 and post.json()["applied"] is False
    assert requests.post(f"{sim.url}/_sim/split", json={"symbol": b, "new_rate": 1, "old_rate": 5}).json()["applied"]
    sim.market.split(c, 3, 2, date(2026, 11, 30))
    client = CorporateActionsClient(TEST_KEY_ID, TEST_SECRET, url_override=sim.url)
    found = client.get_corporate_actions(
        CorporateActionsRequest(symbols=[a, b, c], start=date(2026, 11, 20), end=date(2026, 11, 25))
    ).data
    [forward] = found["forward_splits"]
    [reverse] = found["reverse_splits"]
    assert isinstance(forward, ForwardSplit) and isinstance(reverse, ReverseSplit)
    assert (forward.symbol, forward.new_rate, forward.old_rate, forward.ex_date) == (a, 2, 1, date(2026, 11, 25))
    assert (reverse.symbol, reverse.new_rate, reverse.old_rate, reverse.ex_date) == (b, 1, 5, date(2026, 11, 24))
    only_reverse = client.get_corporate_actions(
        CorporateActionsRequest(types=["reverse_split"], start=date(2026, 11, 1), end=date(2026, 12, 31))
    ).data
    assert list(only_reverse) == ["reverse_splits"]
    # Pages: one action per page, followed by the SDK through next_page_token.
    paged = requests.get(
        f"{sim.url}/v1/corporate-actions",
        params={"start": "2026-11-01", "end": "2026-12-31", "limit": 1},
        headers=trading_headers(),
    ).json()
    assert sum(len(v) for v in paged["corporate_actions"].values()) == 1 and paged["next_page_token"]


@pytest.mark.parametrize(
    "params",
    [
        {"types": "split"},
        {"start": "2026-11-31"},
        {"start": "2026-11-25", "end": "2026-11-24"},
        {"limit": "0"},
        {"limit": "1001"},
        {"sort": "up"},
        {"symbols": "bad symbol"},
        {"page_token": "not-a-token"},
        {"ids": "x", "symbols": "ABC"},
    ],
)
def test_corporate_actions_bad_parameters_are_400_without_a_code(sim: SimBroker, params: dict[str, str]) -> None:
    response = requests.get(f"{sim.url}/v1/corporate-actions", params=params, headers=trading_headers())
    assert response.status_code == 400, response.text
    assert "code" not in response.json() and response.json()["message"]


def test_admin_split_refuses_bad_bodies(sim: SimBroker) -> None:
    symbol = tradable_symbols(sim.market, 1)[0]
    for body in (
        [],
        {"symbol": symbol},
        {"symbol": symbol, "new_rate": 0, "old_rate": 1},
        {"symbol": "NOPE1", "new_rate": 2, "old_rate": 1},
    ):
        assert requests.post(f"{sim.url}/_sim/split", json=body).status_code == 422, body
