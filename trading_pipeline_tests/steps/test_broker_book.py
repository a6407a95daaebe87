"""The broker's book as a close reads it (steps/broker_book.py): a short holding is negative shares, and a long
trade's close never sells against it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading_pipeline.domain.strategy import price_level
from trading_pipeline.domain.types import PositionSide, TradeStatus
from trading_pipeline.steps.broker_book import BrokerBook
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline_tests.pipeline_fixtures import broker_orders
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols


@pytest.fixture
def sim():
    with running_sim(realtime=False, n_symbols=200) as simulator:
        yield simulator


def short_ten(sim) -> str:
    symbol = tradable_symbols(sim.market, 1)[0]
    order = sim.market.submit_order(
        {"symbol": symbol, "qty": "10", "side": "sell", "type": "market", "time_in_force": "day"}
    )
    assert order.status == "filled" and sim.market.book.positions[symbol].qty == Decimal(-10)
    return symbol


def test_a_short_holding_is_held_as_negative_shares(sim) -> None:
    symbol = short_ten(sim)
    book = BrokerBook.read(make_broker(sim), [symbol])
    assert book.held(symbol) == Decimal(-10)


def test_a_long_trades_close_sends_nothing_against_a_short_holding(db: Database, sim) -> None:
    symbol = short_ten(sim)
    price = sim.market.last_price(symbol)
    trade = trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            symbol=symbol,
            side=PositionSide.LONG,
            qty=Decimal(10),
            entry_price=price,
            entry_at=sim.market.now,
            stop_loss=price_level(price, Decimal(3), up=False),
            take_profit=price_level(price, Decimal(6), up=True),
            status=TradeStatus.OPEN,
        ),
    )
    sim.market.gap(symbol, -15)
    sim.reset_counters()
    result = run_stop_loss_sweep(db, make_broker(sim), run_id="r1", now=sim.market.now, max_quote_age=None)
    assert result.exits_decided == 1  # the long's stop is crossed …
    assert result.orders_submitted == 0 and sim.requests("POST /v2/orders") == 0  # … but nothing is sold
    assert len([o for o in broker_orders(sim) if o.side == "sell"]) == 1  # only the short sale itself
    assert sim.market.book.positions[symbol].qty == Decimal(-10)  # the short is not doubled
    assert trades_repo.get_trade(db, trade.id).status is not TradeStatus.CLOSED
