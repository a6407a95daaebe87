"""Broker payloads a real broker (or a proxy in front of it) can send: NaN/0/negative prices, missing and extra
fields, non-ASCII symbols, naive or impossible timestamps, 10,000-symbol responses.

Each one ends as a typed `BrokerError`, or as a flagged symbol while the others go on — never as a raw
decimal/pydantic exception, never as a price of NaN reaching a decision or the DB.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from trading_pipeline.broker.alpaca import QUOTE_CHUNK_SIZE, AlpacaBroker
from trading_pipeline.broker.base import BrokerError
from trading_pipeline.broker.retry import RetryPolicy
from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.types import ExitReason, OrderAction, PositionSide, TradeStatus
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.steps.reconcile import reconcile_positions
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import QuoteRecord
from trading_pipeline_tests.pipeline_fixtures import seed_positions
from trading_pipeline_tests.reliability.payload_server import PayloadServer, order, payload_server, quote
from trading_pipeline_tests.sim_fixtures import make_broker, running_sim, tradable_symbols

pytestmark = pytest.mark.reliability

QUOTES = "/v2/stocks/quotes/latest"
NAN = float("nan")
BAD_PRICES = {"NaN": NAN, "zero": 0, "negative": -1.5, "infinite": float("inf")}


@pytest.fixture
def server() -> Iterator[PayloadServer]:
    with payload_server() as running:
        yield running


def broker_for(server: PayloadServer, **options: Any) -> AlpacaBroker:
    settings: dict[str, Any] = {
        "trading_url": server.url,
        "data_url": server.url,
        "timeout": 2.0,
        "retry": RetryPolicy(max_attempts=1),
        "fill_wait_seconds": 0,
    }
    settings.update(options)
    return AlpacaBroker("payload-key", "payload-secret", **settings)


def sent_symbols(server: PayloadServer) -> list[str]:
    return [s for method, path, query in server.requests if path == QUOTES for s in query["symbols"].split(",")]


# ---- quotes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [*BAD_PRICES, "naive timestamp"])
def test_an_unusable_quote_is_missing_for_its_symbol_only(server: PayloadServer, case: str) -> None:
    bad = quote(BAD_PRICES.get(case, 10.0), 10.1)
    if case == "naive timestamp":
        bad["t"] = "2026-11-24T15:00:00"  # no zone: which instant is it?
    server.route("GET", QUOTES, lambda q, b: (200, {"quotes": {"AAA": bad, "BBB": quote(5.0, 5.01)}}))
    batch = broker_for(server).latest_quotes(["AAA", "BBB"])
    assert set(batch.quotes) == {"BBB"} and batch.missing == {"AAA"}
    assert all(q.bid.is_finite() and q.bid > 0 for q in batch.quotes.values())


@pytest.mark.parametrize("field", ["bp", "ap", "t"])
def test_a_quote_missing_a_field_is_a_typed_error(server: PayloadServer, field: str) -> None:
    broken = {k: v for k, v in quote(5.0, 5.01).items() if k != field}
    server.route("GET", QUOTES, lambda q, b: (200, {"quotes": {"AAA": broken}}))
    with pytest.raises(BrokerError, match="latest_quotes: unexpected response"):
        broker_for(server).latest_quotes(["AAA"])


def test_extra_fields_are_ignored(server: PayloadServer) -> None:
    generous = quote(5.0, 5.01, extra_field="x", nested={"deep": [1, 2, {"NaN": NAN}]})
    server.route("GET", QUOTES, lambda q, b: (200, {"quotes": {"AAA": generous}, "unexpected": True}))
    batch = broker_for(server).latest_quotes(["AAA"])
    assert batch.quotes["AAA"].bid == Decimal("5.0")


def test_non_ascii_symbols_are_never_sent_and_unrequested_quotes_are_ignored(server: PayloadServer) -> None:
    server.route(
        "GET",
        QUOTES,
        lambda q, b: (200, {"quotes": {"AAA": quote(5.0, 5.01), "ÄBC": quote(1.0, 1.01), "ZZZ": quote(2.0, 2.01)}}),
    )
    batch = broker_for(server).latest_quotes(["AAA", "ÄBC", "Ω", "aaa"])
    assert sent_symbols(server) == ["AAA"]
    assert set(batch.rejected) == {"ÄBC", "Ω", "aaa"}
    assert set(batch.quotes) == {"AAA"}  # ZZZ and ÄBC were not asked for: not ours to store or judge


def test_ten_thousand_symbols(server: PayloadServer) -> None:
    symbols = [f"S{i:05d}" for i in range(10_000)]
    assets = [
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "class": "us_equity",
            "exchange": "NASDAQ",
            "symbol": symbol,
            "name": f"Company {i}",
            "status": "active",
            "tradable": True,
            "marginable": True,
            "shortable": True,
            "easy_to_borrow": True,
            "fractionable": True,
        }
        for i, symbol in enumerate(symbols)
    ]
    server.route("GET", "/v2/assets", lambda q, b: (200, assets))
    server.route(
        "GET", QUOTES, lambda q, b: (200, {"quotes": {s: quote(10.0, 10.02) for s in q["symbols"].split(",")}})
    )
    broker = broker_for(server)
    assert [a.symbol for a in broker.active_assets()] == symbols
    batch = broker.latest_quotes(symbols)
    assert len(batch.quotes) == 10_000 and not batch.missing
    assert batch.requests == 10_000 // QUOTE_CHUNK_SIZE
    assert sorted(sent_symbols(server)) == symbols  # each symbol asked for once


def test_a_sweep_flags_a_nan_quote_and_still_protects_the_others(db: Database) -> None:
    """Trading at the sim broker, quotes from a feed that sends NaN for one symbol and a crash for another."""
    with running_sim(realtime=False, n_symbols=200) as sim, payload_server() as feed:
        nan_trade, crashed_trade, calm_trade = seed_positions(db, sim, tradable_symbols(sim.market, 3), qty=2)
        quotes = {
            nan_trade.symbol: quote(NAN, NAN),
            crashed_trade.symbol: quote(float(crashed_trade.stop_loss) * 0.9, float(crashed_trade.stop_loss) * 0.91),
            calm_trade.symbol: quote(float(calm_trade.entry_price), float(calm_trade.entry_price) + 0.02),
        }
        for item in quotes.values():
            item["t"] = sim.market.now.isoformat().replace("+00:00", "Z")
        feed.route("GET", QUOTES, lambda q, b: (200, {"quotes": quotes}))
        broker = make_broker(sim, data_url=feed.url)
        result = run_stop_loss_sweep(db, broker, run_id="nan-feed", now=sim.market.now)

        assert nan_trade.symbol in result.flagged_positions
        assert trades_repo.get_trade(db, nan_trade.id).status is TradeStatus.OPEN  # not acted on
        assert trades_repo.get_trade(db, crashed_trade.id).status is TradeStatus.CLOSED
        assert trades_repo.get_trade(db, calm_trade.id).status is TradeStatus.OPEN
        with db.transaction() as session:
            stored = set(session.scalars(sa.select(QuoteRecord.symbol)))
        assert nan_trade.symbol not in stored  # no NaN price in the quotes table


# ---- orders, positions, account, clock ------------------------------------------------------------------


@pytest.mark.parametrize("price", ["NaN", "abc", "-3", "0", "Infinity", None])
def test_a_fill_without_a_usable_price_is_a_typed_error(server: PayloadServer, price: str | None) -> None:
    fields = {"filled_avg_price": price} if price is not None else {"filled_avg_price": None}
    server.route(
        "GET", "/v2/orders:by_client_order_id", lambda q, b: (200, order(q["client_order_id"], "AAA", **fields))
    )
    with pytest.raises(BrokerError, match=r"filled_avg_price|fill price"):
        broker_for(server).order_by_client_order_id("tp-any")


@pytest.mark.parametrize("price", ["NaN", "abc", "-3"])
def test_a_leftover_close_with_a_bad_fill_is_flagged_and_nothing_is_written(
    db: Database, server: PayloadServer, price: str
) -> None:
    trade = trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            symbol="AAA",
            side=PositionSide.LONG,
            qty=Decimal(4),
            entry_price=Decimal("12"),
            entry_at=datetime(2026, 11, 24, 15, tzinfo=UTC),
            stop_loss=Decimal("11"),
        ),
    )
    cid = client_order_id(trade.id, OrderAction.CLOSE, 0)
    assert claims_repo.claim_for_close(
        db, trade.id, client_order_id=cid, reason=ExitReason.STOP_LOSS, trigger_price=Decimal("11"), run_id="crashed"
    )
    server.route(
        "GET",
        "/v2/orders:by_client_order_id",
        lambda q, b: (200, order(q["client_order_id"], "AAA", filled_avg_price=price)),
    )
    result = run_stop_loss_sweep(db, broker_for(server), run_id="next", now=trade.entry_at + timedelta(minutes=5))
    assert "AAA" in result.failures and result.closed == 0
    after = trades_repo.get_trade(db, trade.id)
    assert after.status is TradeStatus.CLOSING and after.close_price is None
    assert orders_repo.get_order(db, cid) is None


def test_an_order_with_extra_fields_or_missing_required_ones(server: PayloadServer) -> None:
    server.route(
        "GET",
        "/v2/orders:by_client_order_id",
        lambda q, b: (200, order(q["client_order_id"], "AAA", brand_new_field={"x": [1]})),
    )
    assert broker_for(server).order_by_client_order_id("tp-any").filled_avg_price == Decimal("10.5")
    server.route(
        "GET", "/v2/orders:by_client_order_id", lambda q, b: (200, order(q["client_order_id"], "AAA", status=None))
    )
    with pytest.raises(BrokerError, match="unexpected response"):
        broker_for(server).order_by_client_order_id("tp-any")


def position(symbol: str, qty: str) -> dict[str, Any]:
    return {
        "asset_id": "0b1c2d3e-0000-4000-8000-0000000000aa",
        "symbol": symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "asset_marginable": True,
        "qty": qty,
        "qty_available": qty,
        "avg_entry_price": "10",
        "side": "long",
        "market_value": "40",
        "cost_basis": "40",
        "unrealized_pl": "0",
        "unrealized_plpc": "0",
        "unrealized_intraday_pl": "0",
        "unrealized_intraday_plpc": "0",
        "current_price": "10",
        "lastday_price": "10",
        "change_today": "0",
    }


def test_reconciliation_reports_nan_quantities_and_non_ascii_symbols(db: Database, server: PayloadServer) -> None:
    trades_repo.insert_trade(
        db,
        trades_repo.NewTrade(
            symbol="AAA",
            side=PositionSide.LONG,
            qty=Decimal(4),
            entry_price=Decimal(10),
            entry_at=datetime(2026, 11, 24, 15, tzinfo=UTC),
        ),
    )
    server.route("GET", "/v2/positions", lambda q, b: (200, [position("AAA", "NaN"), position("ÄÖÜ", "3")]))
    result = reconcile_positions(db, broker_for(server))
    assert not result.clean
    assert "AAA" in result.qty_mismatch and "ÄÖÜ" in result.extra_at_broker


def test_an_account_without_a_usable_buying_power_is_a_typed_error(server: PayloadServer) -> None:
    account = {
        "id": "0b1c2d3e-0000-4000-8000-000000000001",
        "account_number": "PA1",
        "status": "ACTIVE",
        "currency": "USD",
        "buying_power": "NaN",
        "cash": "100",
        "equity": "100",
        "trading_blocked": False,
        "account_blocked": False,
    }
    server.route("GET", "/v2/account", lambda q, b: (200, account))
    with pytest.raises(BrokerError, match="buying_power"):
        broker_for(server).account()


@pytest.mark.parametrize("stamp", ["2026-11-24T10:00:00", "2026-11-24T10:00:00+99:00", "yesterday"])
def test_a_clock_in_an_unknown_timezone_is_a_typed_error(server: PayloadServer, stamp: str) -> None:
    clock = {
        "timestamp": stamp,
        "is_open": True,
        "next_open": "2026-11-25T09:30:00-05:00",
        "next_close": "2026-11-24T16:00:00-05:00",
    }
    server.route("GET", "/v2/clock", lambda q, b: (200, clock))
    with pytest.raises(BrokerError):
        broker_for(server).clock()
