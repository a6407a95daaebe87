"""Latest quotes: deduplicated, validated, chunked — proven by the sim server's request counters."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, timedelta
from decimal import Decimal

import pytest

from trading_pipeline.broker.alpaca import QUOTE_CHUNK_SIZE, AlpacaBroker
from trading_pipeline.broker.symbols import SYMBOL_PATTERN, split_symbols, symbol_problem
from trading_pipeline.sim import data_routes
from trading_pipeline.sim.server import SimBroker

try:
    from trading_pipeline_tests.sim_fixtures import make_broker, running_sim
except ImportError:  # run from inside the tests folder
    from sim_fixtures import make_broker, running_sim  # type: ignore[no-redef]

QUOTES = "GET /v2/stocks/quotes/latest"


@pytest.fixture
def sim() -> Iterator[SimBroker]:
    with running_sim() as running:
        yield running


@pytest.fixture
def broker(sim: SimBroker) -> AlpacaBroker:
    return make_broker(sim)


def test_100_positions_over_50_symbols_take_one_request(sim: SimBroker, broker: AlpacaBroker) -> None:
    unique = sim.market.symbols[:50]
    positions = unique + unique  # two positions per symbol
    batch = broker.latest_quotes(positions)
    assert len(batch.quotes) == 50 and not batch.missing and not batch.rejected
    assert batch.requests == 1 == sim.requests(QUOTES)


def test_quotes_are_decimal_aware_and_match_the_market(sim: SimBroker, broker: AlpacaBroker) -> None:
    batch = broker.latest_quotes(sim.market.symbols[:20])
    for symbol, quote in batch.quotes.items():
        expected = sim.market.quote(symbol)
        assert expected is not None
        assert (quote.symbol, quote.bid, quote.ask) == (symbol, expected.bid, expected.ask)
        assert isinstance(quote.bid, Decimal) and quote.timestamp == expected.timestamp
        assert quote.timestamp.tzinfo is not None and quote.timestamp.utcoffset() == UTC.utcoffset(None)


def test_5000_symbols_take_ceil_5000_over_the_chunk_size_requests() -> None:
    with running_sim(n_symbols=5000) as sim:
        broker = make_broker(sim)
        batch = broker.latest_quotes(sim.market.symbols)
        assert len(batch.quotes) == 5000 and not batch.missing
        assert batch.requests == math.ceil(5000 / QUOTE_CHUNK_SIZE) == sim.requests(QUOTES) == 10


def test_chunk_size_is_configurable(sim: SimBroker) -> None:
    broker = make_broker(sim, quote_chunk_size=7)
    batch = broker.latest_quotes(sim.market.symbols[:50])
    assert len(batch.quotes) == 50 and batch.requests == 8 == sim.requests(QUOTES)


def test_unknown_symbols_are_missing_and_malformed_ones_rejected_not_sent(sim: SimBroker, broker: AlpacaBroker) -> None:
    unknown = "QQQQQ"
    assert sim.market.asset(unknown) is None
    batch = broker.latest_quotes(["SPY", unknown, "spy", "BAD$", "", " SPY", "X" * 21, "SPY"])
    assert set(batch.quotes) == {"SPY"}
    assert batch.missing == frozenset({unknown})
    assert set(batch.rejected) == {"spy", "BAD$", "", " SPY", "X" * 21}
    assert "lower-case" in batch.rejected["spy"] and "whitespace" in batch.rejected[" SPY"]
    assert batch.requests == 1  # and it succeeded: one malformed symbol would have failed it with 400


def test_nothing_valid_means_no_request(sim: SimBroker, broker: AlpacaBroker) -> None:
    batch = broker.latest_quotes(["bad", "1ABC"])
    assert batch.quotes == {} and batch.requests == 0 and sim.requests(QUOTES) == 0
    assert set(batch.rejected) == {"bad", "1ABC"}


def test_adapter_and_sim_agree_on_what_a_symbol_is() -> None:
    assert SYMBOL_PATTERN.pattern == data_routes.SYMBOL_PATTERN.pattern
    for good in ("A", "SPY", "BRK.B", "BRK/B", "ABCDE"):
        assert symbol_problem(good) is None
    valid, rejected = split_symbols(["B", "A", "B", 7])
    assert valid == ["B", "A"] and "7" in rejected


def test_stale_and_halted_symbols_keep_their_old_timestamp(sim: SimBroker, broker: AlpacaBroker) -> None:
    stale, halted, fresh = sim.market.symbols[1:4]
    before = broker.latest_quotes([stale, halted, fresh]).quotes
    sim.market.stale(stale)
    sim.market.halt(halted)
    sim.market.advance(timedelta(minutes=10))
    after = broker.latest_quotes([stale, halted, fresh]).quotes
    assert after[stale] == before[stale] and after[halted] == before[halted]
    assert after[fresh].timestamp - before[fresh].timestamp == timedelta(minutes=10)
    sim.market.set_tradable(halted, False)  # a halt alone leaves it tradable; Alpaca's listing flag does not
    assert halted not in {a.symbol for a in broker.active_assets()}
