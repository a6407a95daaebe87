"""Daily bars as the market-data API serves them: one `SimBar` per symbol and session, rounded to the tick.

Raw bars (Alpaca's default `adjustment=raw`): a split changes prices from its ex-date on, and the sessions
before it keep the prices they traded at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from trading_pipeline.sim.prices import DailyBars, PriceModel, round_to_tick
from trading_pipeline.sim.sessions import NyseSessions


@dataclass(frozen=True, slots=True)
class SimBar:
    symbol: str
    day: date
    timestamp: datetime  # midnight America/New_York of the session, in UTC (Alpaca's daily bar stamp)
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    trade_count: int
    vwap: Decimal


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def daily_bars(
    prices: PriceModel,
    sessions: NyseSessions,
    index: Mapping[str, int],
    symbols: Iterable[str],
    start: date,
    end: date,
) -> dict[str, list[SimBar]]:
    """Daily bars per known symbol for sessions start..end that have begun (today's bar is partial)."""
    wanted = [(s, index[s]) for s in dict.fromkeys(symbols) if s in index]
    out: dict[str, list[SimBar]] = {symbol: [] for symbol, _ in wanted}
    if not wanted:
        return out
    columns = np.array([i for _, i in wanted])
    for session in sessions.indices_between(start, end):
        bars = prices.bars_for_session(session)
        if bars is None:
            break
        _append_bars(out, wanted, columns, sessions.days[session], bars)
    return out


def _append_bars(
    out: dict[str, list[SimBar]], wanted: list[tuple[str, int]], columns: np.ndarray, day: date, bars: DailyBars
) -> None:
    open_ = round_to_tick(bars.open[columns])
    close = round_to_tick(bars.close[columns])
    # Rounding must not break high >= max(open, close) and low <= min(open, close).
    high = np.maximum(round_to_tick(bars.high[columns]), np.maximum(open_, close))
    low = np.minimum(round_to_tick(bars.low[columns]), np.minimum(open_, close))
    volume = np.maximum(bars.volume[columns], 100.0).astype(np.int64)
    vwap = round_to_tick((high + low + close) / 3.0)
    stamp = new_york_midnight_utc(day)
    for k, (symbol, _) in enumerate(wanted):
        out[symbol].append(
            SimBar(
                symbol=symbol,
                day=day,
                timestamp=stamp,
                open=_dec(open_[k]),
                high=_dec(high[k]),
                low=_dec(low[k]),
                close=_dec(close[k]),
                volume=int(volume[k]),
                trade_count=int(volume[k] // 120) + 1,
                vwap=_dec(vwap[k]),
            )
        )


def new_york_midnight_utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)
