"""Seeded, vectorised prices for the whole universe: the intraday walk, quotes, and daily bars.

Every random draw is keyed by *what* it is for (a minute, a session's overnight gap, a historical session),
not by how many draws came before. So the market at a given instant is the same however the clock got
there (one `advance` of an hour or sixty of a minute), and history for any past session can be computed
on demand without replaying the days before it.

History is anchored at the last session that closed before the simulation started: its closes are the
starting prices; earlier sessions are derived backwards from them (synthetic bars); later sessions are
recorded from the intraday walk as the clock lives through them. Today's walk therefore starts from the
previous close, and bars for adjacent sessions agree with each other (open = previous close x overnight gap).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

TRADING_MINUTES_PER_DAY = 390.0
_DT = 1.0 / TRADING_MINUTES_PER_DAY
# Overnight gaps are a fraction of a day's volatility; intraday noise carries the rest.
_OVERNIGHT_VOL_FRACTION = 0.3

# Stream tags of the seeded generators, one per purpose.
_STREAM_HISTORY = 1
_STREAM_MINUTE = 2
_STREAM_OPEN_GAP = 3
_STREAM_PARAMETERS = 20


@dataclass(frozen=True, slots=True)
class DailyBars:
    """One session's bars for every symbol of the universe (arrays indexed like the universe)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def round_to_tick(prices: np.ndarray) -> np.ndarray:
    """Cents at or above $1, four decimals below (the sub-dollar tick)."""
    return np.where(prices >= 1.0, np.round(prices, 2), np.round(prices, 4))


def _tick(prices: np.ndarray) -> np.ndarray:
    return np.where(prices >= 1.0, 0.01, 0.0001)


class PriceModel:
    """Mid prices, spreads, quotes and bars for `n` symbols. Not thread-safe: `Market` holds the lock."""

    def __init__(self, seed: int, n: int, benchmark_index: int | None, day_ordinals: list[int]) -> None:
        """`day_ordinals[i]` is the date ordinal of session i; it keys the random draws of that session."""
        self.seed = seed
        self.n = n
        self._day_ordinals = day_ordinals
        rng = np.random.default_rng([seed, _STREAM_PARAMETERS])
        self.mid = np.exp(rng.normal(np.log(35.0), 0.9, n)).clip(3.0, 1500.0)
        self.mu = rng.normal(0.0003, 0.0008, n)  # daily log drift
        self.sigma = rng.uniform(0.012, 0.045, n)  # daily log volatility
        self.half_spread = rng.uniform(1.0, 15.0, n) / 10_000.0  # fraction of mid
        self.base_volume = np.exp(rng.normal(np.log(1.5e6), 1.0, n))
        if benchmark_index is not None:
            self.mid[benchmark_index] = 450.0
            self.mu[benchmark_index] = 0.0004
            self.sigma[benchmark_index] = 0.009
            self.half_spread[benchmark_index] = 0.00002
            self.base_volume[benchmark_index] = 7.0e7
        self.bid = np.zeros(n)
        self.ask = np.zeros(n)
        self.quote_ts = np.zeros(n)  # epoch seconds of each symbol's last quote update
        self.stale = np.zeros(n, dtype=bool)
        self.halted = np.zeros(n, dtype=bool)
        self.anchor_index: int | None = None
        self._closes_back: list[np.ndarray] = []
        self.live_bars: dict[int, DailyBars] = {}
        self.day_index: int | None = None
        self.day_open = np.zeros(n)
        self.day_high = np.zeros(n)
        self.day_low = np.zeros(n)
        self.day_volume = np.zeros(n)
        self.requote()

    # ---- anchoring and quotes -------------------------------------------------------------------------

    def anchor(self, index: int, when: datetime) -> None:
        """Session `index` closed at `when` at the current mid prices; everything before it is synthetic."""
        self.anchor_index = index
        self._closes_back = [self.mid.copy()]
        self.quote_ts[:] = when.timestamp()
        self.requote()

    def requote(self, mask: np.ndarray | None = None) -> None:
        """Recompute bid/ask (rounded outwards to the tick) from mid and half spread."""
        select = slice(None) if mask is None else mask
        mid = self.mid[select]
        tick = _tick(mid)
        # The epsilon keeps a price that is exactly on the tick from being floored a tick lower.
        bid = np.floor(mid * (1.0 - self.half_spread[select]) / tick + 1e-6) * tick
        ask = np.ceil(mid * (1.0 + self.half_spread[select]) / tick - 1e-6) * tick
        bid = np.maximum(bid, tick)
        ask = np.maximum(ask, bid + tick)
        self.bid[select] = round_to_tick(bid)
        self.ask[select] = round_to_tick(ask)

    @property
    def frozen(self) -> np.ndarray:
        """Symbols whose quote does not update: stale or halted."""
        return self.stale | self.halted

    def _track_day(self, mask: np.ndarray | slice) -> None:
        if self.day_index is not None:
            self.day_high[mask] = np.maximum(self.day_high[mask], self.mid[mask])
            self.day_low[mask] = np.minimum(self.day_low[mask], self.mid[mask])

    # ---- the walk -------------------------------------------------------------------------------------

    def open_session(self, index: int, when: datetime) -> None:
        """Overnight gap at the open; start today's bar."""
        rng = np.random.default_rng([self.seed, _STREAM_OPEN_GAP, self._day_ordinals[index]])
        z = rng.standard_normal(self.n)
        moving = ~self.frozen
        self.mid[moving] *= np.exp(_OVERNIGHT_VOL_FRACTION * self.sigma[moving] * z[moving])
        self.requote(moving)
        self.quote_ts[moving] = when.timestamp()
        self.day_index = index
        self.day_open = self.mid.copy()
        self.day_high = self.mid.copy()
        self.day_low = self.mid.copy()
        self.day_volume = np.zeros(self.n)

    def step_minute(self, when: datetime) -> None:
        """One simulated minute of geometric Brownian motion for every symbol that is not frozen."""
        minute = int(when.timestamp() // 60)
        rng = np.random.default_rng([self.seed, _STREAM_MINUTE, minute])
        z = rng.standard_normal((2, self.n))
        moving = ~self.frozen
        sigma = self.sigma[moving]
        log_return = (self.mu[moving] - 0.5 * sigma * sigma) * _DT + sigma * np.sqrt(_DT) * z[0, moving]
        self.mid[moving] *= np.exp(log_return)
        self.requote(moving)
        self.quote_ts[moving] = when.timestamp()
        self._track_day(moving)
        self.day_volume[moving] += self.base_volume[moving] * _DT * np.exp(0.5 * z[1, moving] - 0.125)

    def close_session(self, index: int) -> None:
        self.live_bars[index] = self.current_bar()
        self.day_index = None

    def current_bar(self) -> DailyBars:
        return DailyBars(
            open=self.day_open.copy(),
            high=self.day_high.copy(),
            low=self.day_low.copy(),
            close=self.mid.copy(),
            volume=self.day_volume.copy(),
        )

    # ---- scenarios ------------------------------------------------------------------------------------

    def gap(self, i: int, pct: float, when: datetime) -> None:
        factor = 1.0 + pct / 100.0
        if factor <= 0:
            raise ValueError(f"a gap of {pct}% would make the price non-positive")
        self.mid[i] *= factor
        self._touch(i, when)

    def set_price(self, i: int, bid: float, ask: float, when: datetime) -> None:
        if not (0 < bid < ask):
            raise ValueError(f"need 0 < bid < ask, got bid {bid} ask {ask}")
        self.mid[i] = (bid + ask) / 2.0
        self.half_spread[i] = (ask - bid) / (ask + bid)
        self.bid[i] = bid
        self.ask[i] = ask
        self.quote_ts[i] = when.timestamp()
        self._track_day(np.array([i]))

    def rebase(self, i: int, ratio: float, when: datetime) -> None:
        """A split of `ratio` (new shares per old): every price of symbol `i` from now on ÷ ratio; today's bar
        too, since a session in progress trades at the new prices (earlier bars stay raw)."""
        self.mid[i] /= ratio
        if self.day_index is not None:
            for bar in (self.day_open, self.day_high, self.day_low):
                bar[i] /= ratio
        self._touch(i, when)

    def _touch(self, i: int, when: datetime) -> None:
        mask = np.zeros(self.n, dtype=bool)
        mask[i] = True
        self.requote(mask)
        self.quote_ts[i] = when.timestamp()
        self._track_day(mask)

    # ---- history --------------------------------------------------------------------------------------

    def _history_draws(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _STREAM_HISTORY, self._day_ordinals[index]])
        return rng.standard_normal((5, self.n))

    def _close_log_return(self, index: int, draws: np.ndarray | None = None) -> np.ndarray:
        z = self._history_draws(index) if draws is None else draws
        return (self.mu - 0.5 * self.sigma**2) + self.sigma * z[0]

    def _synthetic_close(self, index: int) -> np.ndarray:
        assert self.anchor_index is not None
        back = self.anchor_index - index
        while len(self._closes_back) <= back:
            k = len(self._closes_back)
            # close(anchor - k) = close(anchor - k + 1) / exp(return of session anchor - k + 1)
            later = self.anchor_index - k + 1
            self._closes_back.append(self._closes_back[k - 1] / np.exp(self._close_log_return(later)))
        return self._closes_back[back]

    def bars_for_session(self, index: int) -> DailyBars | None:
        """Bars of session `index` for every symbol; None for sessions that have not started yet."""
        if self.anchor_index is None:
            return None
        if index <= self.anchor_index:
            return self._synthetic_bar(index)
        if index in self.live_bars:
            return self.live_bars[index]
        if index == self.day_index:
            return self.current_bar()
        return None

    def _synthetic_bar(self, index: int) -> DailyBars:
        z = self._history_draws(index)
        close = self._synthetic_close(index)
        log_return = self._close_log_return(index, z)
        previous_close = close / np.exp(log_return)
        open_ = previous_close * np.exp(_OVERNIGHT_VOL_FRACTION * self.sigma * z[1])
        high = np.maximum(open_, close) * np.exp(0.5 * self.sigma * np.abs(z[2]))
        low = np.minimum(open_, close) * np.exp(-0.5 * self.sigma * np.abs(z[3]))
        volume = self.base_volume * np.exp(0.4 * z[4])
        return DailyBars(open=open_, high=high, low=low, close=close, volume=volume)
