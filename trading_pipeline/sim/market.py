"""A seeded US-equity market: universe, NYSE clock, prices, history, scenarios and one trading account.

`Market` is what the HTTP server and tests talk to, from several threads: a re-entrant lock guards all state.
The clock moves only when told (`set_time`, `advance`, `advance_to`); between two instants the market replays
every session open, minute and close, evaluating working orders after each price change, so a stop fills the
minute it is crossed with no client connected. Prices move only in NYSE sessions (XNYS: holidays, half days).

Same seed + same start + same sequence of clock moves and scenario calls → the same market.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from trading_pipeline.sim.account import SimOrder
from trading_pipeline.sim.corporate_actions import CorporateActionLedger
from trading_pipeline.sim.history import SimBar, daily_bars
from trading_pipeline.sim.order_requests import OrderParams, parse_order_request
from trading_pipeline.sim.orders import OrderBook
from trading_pipeline.sim.prices import PriceModel, round_to_tick
from trading_pipeline.sim.replace import replace_order
from trading_pipeline.sim.scenarios import MarketScenarios
from trading_pipeline.sim.sessions import NyseSessions
from trading_pipeline.sim.universe import BENCHMARK_SYMBOL, SimAsset, generate_universe, uuid_from

DEFAULT_SEED = 7
DEFAULT_N_SYMBOLS = 5000
DEFAULT_INITIAL_CASH = Decimal("100000")
_MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class SimQuote:
    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: int
    ask_size: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ClockState:
    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime


def _aware_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the simulated clock needs timezone-aware datetimes, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


class Market(MarketScenarios):
    """The simulated market and account. Every public method takes the lock."""

    def __init__(
        self,
        *,
        seed: int = DEFAULT_SEED,
        n_symbols: int = DEFAULT_N_SYMBOLS,
        start: datetime | None = None,
        initial_cash: Decimal = DEFAULT_INITIAL_CASH,
    ) -> None:
        start_utc = _aware_utc(start) if start is not None else datetime.now(UTC)
        self.seed = seed
        self.lock = threading.RLock()
        self._assets = generate_universe(seed, n_symbols)
        self._index = {asset.symbol: i for i, asset in enumerate(self._assets)}
        self.sessions = NyseSessions.around(start_utc)
        first_live = self.sessions.first_closing_after(start_utc)
        anchor = first_live - 1
        if anchor < 0:
            raise ValueError(f"start {start_utc.isoformat()} is too early for the simulated calendar")
        self.prices = PriceModel(
            seed,
            len(self._assets),
            self._index.get(BENCHMARK_SYMBOL),
            [day.toordinal() for day in self.sessions.days],
        )
        self._now = self.sessions.closes[anchor]
        self.prices.anchor(anchor, self._now)
        self._session: int | None = None  # index of the session in progress
        self._next_session = first_live
        self.book = OrderBook(self, seed=seed, initial_cash=initial_cash)
        self.corporate_actions = CorporateActionLedger(seed)
        self.untradable: set[str] = set()  # symbols Alpaca does not trade now (`set_tradable`)
        self.account_id = uuid_from(np.random.default_rng([seed, 30]))
        self.account_number = "PA" + "".join(str(d) for d in np.random.default_rng([seed, 31]).integers(0, 10, 10))
        self.created_at = start_utc - timedelta(days=365)
        self.advance_to(start_utc)

    # ---- clock ----------------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self._now

    @property
    def session_open(self) -> bool:
        return self._session is not None

    def set_time(self, moment: datetime) -> None:
        """Move the clock forward to `moment` (time never goes backwards: fills already happened)."""
        self.advance_to(moment)

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError(f"cannot advance by a negative duration {delta}")
        with self.lock:
            self.advance_to(self._now + delta)

    def advance_to(self, moment: datetime) -> None:
        target = _aware_utc(moment)
        with self.lock:
            if target < self._now:
                raise ValueError(
                    f"the simulated clock cannot go back from {self._now.isoformat()} to {target.isoformat()}"
                )
            if target > self.sessions.closes[-1]:
                # Refuse at once: walking minute by minute to the calendar's end holds the lock (and every
                # request) for tens of seconds, then fails with an IndexError (a 500 on /_sim/clock).
                raise ValueError(
                    f"{target.isoformat()} is beyond the simulated calendar "
                    f"(its last session closes {self.sessions.closes[-1].isoformat()})"
                )
            while True:
                event = self._next_event_time()
                if event > target:
                    break
                self._apply_splits_due(event)  # a BOD process runs before the open it precedes
                self._apply_event(event)
            self._apply_splits_due(target)
            self._now = target

    def _next_event_time(self) -> datetime:
        if self._session is None:
            return self.sessions.opens[self._next_session]
        close = self.sessions.closes[self._session]
        next_minute = datetime.fromtimestamp((self._now.timestamp() // _MINUTE + 1) * _MINUTE, UTC)
        return min(next_minute, close)

    def _apply_event(self, moment: datetime) -> None:
        self._now = moment
        if self._session is None:
            index = self._next_session
            self._session = index
            self.prices.open_session(index, moment)
            self.book.on_open()
            self.book.evaluate()  # the opening match: queued orders fill at the open
            self.book.after_opening_auction()
            return
        else:
            index = self._session
            self.prices.step_minute(moment)
            if moment >= self.sessions.closes[index]:
                self.book.evaluate()  # the closing price is still tradable
                self.prices.close_session(index)
                self._session = None
                self._next_session = index + 1
                self.book.on_close()
                return
        self.book.evaluate()

    def clock(self) -> ClockState:
        with self.lock:
            return ClockState(
                timestamp=self._now,
                is_open=self.session_open,
                next_open=self.sessions.next_open(self._now),
                next_close=self.sessions.next_close(self._now),
            )

    def day_order_expiry(self) -> datetime:
        """Close of the session a day order submitted now belongs to (today's, or the next one)."""
        return self.sessions.next_close(self._now)

    # ---- universe -------------------------------------------------------------------------------------

    @property
    def assets(self) -> list[SimAsset]:
        """All assets, alphabetical by symbol (as Alpaca lists them)."""
        with self.lock:
            return sorted((self._asset_now(asset) for asset in self._assets), key=lambda asset: asset.symbol)

    @property
    def symbols(self) -> list[str]:
        return sorted(asset.symbol for asset in self._assets)

    def asset(self, symbol: str) -> SimAsset | None:
        with self.lock:
            i = self._index.get(symbol)
            return None if i is None else self._asset_now(self._assets[i])

    def _asset_now(self, asset: SimAsset) -> SimAsset:
        if asset.symbol in self.untradable:
            return dataclasses.replace(asset, tradable=False)
        return asset

    # ---- quotes ---------------------------------------------------------------------------------------

    def quote(self, symbol: str) -> SimQuote | None:
        with self.lock:
            i = self._index.get(symbol)
            return None if i is None else self._quote_at(i)

    def quotes(self, symbols: Iterable[str]) -> dict[str, SimQuote]:
        """Latest quotes for the known symbols among `symbols` (unknown ones are omitted, like Alpaca)."""
        with self.lock:
            found: dict[str, SimQuote] = {}
            for symbol in symbols:
                i = self._index.get(symbol)
                if i is not None:
                    found[symbol] = self._quote_at(i)
            return found

    def _quote_at(self, i: int) -> SimQuote:
        p = self.prices
        ts = float(p.quote_ts[i])
        size_seed = (i * 7 + int(ts // _MINUTE)) % 9
        return SimQuote(
            symbol=self._assets[i].symbol,
            bid=_dec(p.bid[i]),
            ask=_dec(p.ask[i]),
            bid_size=1 + size_seed,
            ask_size=1 + (size_seed * 5) % 9,
            timestamp=datetime.fromtimestamp(ts, UTC),
        )

    def touch(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        with self.lock:
            i = self._index.get(symbol)
            if i is None or self.prices.halted[i]:
                return None
            return _dec(self.prices.bid[i]), _dec(self.prices.ask[i])

    def last_price(self, symbol: str) -> Decimal:
        """The mid, rounded to the tick: what positions are marked at."""
        with self.lock:
            i = self.index_of(symbol)
            return _dec(round_to_tick(self.prices.mid[i : i + 1])[0])

    def previous_close(self, symbol: str) -> Decimal:
        with self.lock:
            i = self.index_of(symbol)
            index = (self._session if self._session is not None else self._next_session) - 1
            bars = self.prices.bars_for_session(index)
            assert bars is not None
            return _dec(round_to_tick(bars.close[i : i + 1])[0])

    # ---- history --------------------------------------------------------------------------------------

    def daily_bars(self, symbols: Iterable[str], start: date, end: date) -> dict[str, list[SimBar]]:
        """Daily bars per known symbol for sessions start..end that have begun (today's bar is partial)."""
        with self.lock:
            return daily_bars(self.prices, self.sessions, self._index, symbols, start, end)

    # ---- trading --------------------------------------------------------------------------------------

    def place_order(self, payload: Mapping[str, Any] | OrderParams) -> SimOrder:
        """Validate and create an order without evaluating fills (the server answers in between)."""
        with self.lock:
            params = payload if isinstance(payload, OrderParams) else parse_order_request(payload)
            return self.book.place(params)

    def submit_order(self, payload: Mapping[str, Any] | OrderParams) -> SimOrder:
        """Place an order and fill it if it can fill now; returns the live order object."""
        with self.lock:
            order = self.place_order(payload)
            self.book.evaluate()
            return order

    def cancel_order(self, order_id: str) -> SimOrder:
        with self.lock:
            return self.book.cancel(order_id)

    def replace_order(self, order_id: str, changes: Mapping[str, Any]) -> SimOrder:
        """`PATCH /v2/orders/{order_id}` (`replace.py`): the new order, without evaluating fills (like
        `place_order`; the server answers in between, then evaluates)."""
        with self.lock:
            return replace_order(self.book, order_id, changes)

    def close_position(self, symbol: str) -> SimOrder:
        with self.lock:
            order = self.book.close_position(symbol)
            self.book.evaluate()
            return order

    def configure_partial_fills(self, rate: float, fraction: Decimal | float | str = Decimal("0.5")) -> None:
        """From now on, each fill of a market order is partial with probability `rate`: `fraction` of what is left
        fills, the rest at a later matching pass (any price change or clock move). `rate=0` turns them off."""
        with self.lock:
            self.book.partial_fills.configure(rate, fraction)

    def evaluate_orders(self) -> int:
        with self.lock:
            return self.book.evaluate()
