"""What a test stages on the simulated market: price moves, stale quotes, halts, assets Alpaca stops trading,
the account's PDT flag, drift of a position behind the client's back, splits and renames.

A mixin of `Market` (which holds the state; every method takes its lock), kept apart so the market module
stays the clock, the universe and the quotes.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from trading_pipeline.sim.corporate_actions import (
    NEW_YORK,
    CorporateActionLedger,
    SimNameChange,
    SimSplit,
    apply_split,
    beginning_of_day,
    parse_rates,
)
from trading_pipeline.sim.orders import OrderBook
from trading_pipeline.sim.prices import PriceModel
from trading_pipeline.sim.universe import SimAsset


def _truthy(value: object) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")


class MarketScenarios:
    """The scenarios of `Market` (see the module docstring)."""

    lock: threading.RLock
    prices: PriceModel
    book: OrderBook
    corporate_actions: CorporateActionLedger
    untradable: set[str]
    _now: datetime
    _assets: list[SimAsset]
    _index: dict[str, int]

    def index_of(self, symbol: str) -> int:
        i = self._index.get(symbol)
        if i is None:
            raise KeyError(f"unknown symbol {symbol!r}")
        return i

    def _apply_splits_due(self, until: datetime) -> None:
        for split in self.corporate_actions.due(until):
            self._now = max(self._now, split.effective_at)
            apply_split(split, prices=self.prices, book=self.book, index=self.index_of(split.symbol), now=self._now)
            self.book.evaluate()  # a re-based order may be marketable now

    def gap(self, symbol: str, pct: float | Decimal) -> None:
        """Move `symbol` by `pct` percent at once (e.g. -15 gaps 15% down through any stop)."""
        with self.lock:
            self.prices.gap(self.index_of(symbol), float(pct), self._now)
            self.book.evaluate()

    def set_price(self, symbol: str, bid: float | Decimal, ask: float | Decimal) -> None:
        with self.lock:
            self.prices.set_price(self.index_of(symbol), float(bid), float(ask), self._now)
            self.book.evaluate()

    def stale(self, symbol: str) -> None:
        """The quote stops updating: same prices, same (ageing) timestamp."""
        with self.lock:
            self.prices.stale[self.index_of(symbol)] = True

    def halt(self, symbol: str) -> None:
        """Trading halt (LULD or regulatory): the quote freezes (same prices, same timestamp), the asset stays
        `tradable` (a halt is the venue's, not Alpaca's listing), orders are accepted and queued, and nothing
        fills until `resume`."""
        with self.lock:
            self.prices.halted[self.index_of(symbol)] = True

    def set_tradable(self, symbol: str, tradable: bool) -> None:
        """Alpaca stops (or resumes) trading `symbol`: `GET /v2/assets/{symbol}` shows `tradable`, and an order
        for an untradable asset is refused 422 `asset XYZ is not tradable` (orders already open stay)."""
        with self.lock:
            self.index_of(symbol)
            if tradable:
                self.untradable.discard(symbol)
            else:
                self.untradable.add(symbol)

    def set_pattern_day_trader(self, flagged: bool) -> None:
        """The account is (or stops being) restricted by Alpaca's PDT protection: an order that would close a
        position opened in the same session is refused 403 (see `day_trades.py`); the account JSON's
        `pattern_day_trader` says so."""
        with self.lock:
            self.book.pattern_day_trader = bool(flagged)

    def resume(self, symbol: str) -> None:
        """End a halt or staleness; the quote updates again from the next price step."""
        with self.lock:
            i = self.index_of(symbol)
            self.prices.halted[i] = False
            self.prices.stale[i] = False
            self.book.evaluate()

    def apply_scenario(self, kind: str, symbol: str, **params: Any) -> None:
        """Dispatch by name, for the admin HTTP route: gap(pct), set_price(bid, ask), stale, halt, resume,
        tradable(tradable: bool)."""
        actions = {
            "gap": lambda: self.gap(symbol, Decimal(str(params["pct"]))),
            "set_price": lambda: self.set_price(symbol, Decimal(str(params["bid"])), Decimal(str(params["ask"]))),
            "stale": lambda: self.stale(symbol),
            "halt": lambda: self.halt(symbol),
            "resume": lambda: self.resume(symbol),
            "tradable": lambda: self.set_tradable(symbol, _truthy(params.get("tradable", True))),
        }
        if kind not in actions:
            raise ValueError(f"unknown scenario {kind!r}; expected one of {', '.join(actions)}")
        actions[kind]()

    def drift_position(self, symbol: str, qty: Decimal | int | str) -> None:
        """Set the broker's quantity of an open long position behind any client's back (a manual sale in the web
        app, an ACATS transfer): 0 removes it. The entry price is kept; orders are not touched."""
        with self.lock:
            position = self.book.positions.get(symbol)
            target = Decimal(str(qty))
            if position is None:
                raise ValueError(f"no open position in {symbol}: only an existing position can drift")
            if target < 0 or target > abs(position.qty):
                raise ValueError(f"qty must be between 0 and the {abs(position.qty)} held, got {target}")
            if target == 0:
                del self.book.positions[symbol]
            else:
                position.qty = target if position.qty > 0 else -target

    def split(self, symbol: str, new_rate: object, old_rate: object, ex_date: date | None = None) -> SimSplit:
        """Announce a split of `symbol`: `new_rate` new shares per `old_rate` old (2, 1: a 2:1 forward split;
        1, 5: a 1:5 reverse split). It is listed by `GET /v1/corporate-actions` from now on and applied at the
        beginning-of-day process of `ex_date` (see `corporate_actions.py`); with no `ex_date`, or when that
        moment has passed on the ex-date itself, it is applied at once with today as its ex-date."""
        with self.lock:
            self.index_of(symbol)  # an unknown symbol is a KeyError, as for the other scenarios
            new, old = parse_rates(new_rate, old_rate)
            today = self._now.astimezone(NEW_YORK).date()
            day = today if ex_date is None else ex_date
            if day < today:
                raise ValueError(f"ex_date {day} is in the past (the simulated day is {today})")
            effective = self._now if ex_date is None else max(self._now, beginning_of_day(day))
            split = self.corporate_actions.announce(symbol, new, old, day, effective)
            self._apply_splits_due(self._now)
            return split

    def rename(self, old: str, new: str, publish_delay: timedelta = timedelta(0)) -> SimNameChange:
        """A symbol change (Alpaca's `name_change`): from now on the asset, its quotes and bars, the position
        and the open orders are under `new` (same asset id; `old` is unknown, as a delisted symbol is).
        `GET /v1/corporate-actions` lists it (`name_changes`: old_symbol, new_symbol, process_date today) only
        once `publish_delay` of simulated time has passed: Alpaca's announcements come after the fact."""
        if publish_delay < timedelta(0):
            raise ValueError(f"publish_delay must be >= 0, got {publish_delay}")
        with self.lock:
            i = self.index_of(old)
            if not new or new in self._index:
                raise ValueError(f"{new!r} is already a symbol (or empty): a rename needs a new symbol")
            self._assets[i] = dataclasses.replace(self._assets[i], symbol=new)
            del self._index[old]
            self._index[new] = i
            if old in self.untradable:
                self.untradable.discard(old)
                self.untradable.add(new)
            position = self.book.positions.pop(old, None)
            if position is not None:
                position.symbol = new
                self.book.positions[new] = position
            for split in self.corporate_actions.splits:
                if split.symbol == old and not split.applied:  # an announced split follows the shares
                    split.symbol = new
            for order in self.book.orders.values():
                if order.symbol == old and order.is_open:
                    order.symbol = new
                    order.updated_at = self._now
            today = self._now.astimezone(NEW_YORK).date()
            return self.corporate_actions.announce_name_change(old, new, today, self._now + publish_delay)
