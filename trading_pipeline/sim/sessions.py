"""NYSE trading sessions for the simulator, from exchange_calendars' XNYS calendar.

Holidays, weekends and half days come from the library, never from a hand-written list. The calendar is
read once into plain sorted lists so that the price loop (one lookup per simulated minute) does not pay
for pandas indexing.
"""

from __future__ import annotations

import bisect
import warnings
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import exchange_calendars as xcals

CALENDAR_NAME = "XNYS"


def _require_aware(moment: datetime) -> float:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {moment.isoformat()}")
    return moment.timestamp()


class NyseSessions:
    """Sessions of the NYSE between two dates: `days[i]` opens at `opens[i]` and closes at `closes[i]` (UTC)."""

    def __init__(self, first: date, last: date) -> None:
        with warnings.catch_warnings():
            # exchange_calendars 4.13 trips pandas 3's deprecation of Series.values on tz-aware data; noise only.
            warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
            calendar = xcals.get_calendar(CALENDAR_NAME, start=first.isoformat(), end=last.isoformat())
        self.days: list[date] = [ts.date() for ts in calendar.sessions]
        self.opens: list[datetime] = [ts.to_pydatetime().astimezone(UTC) for ts in calendar.opens]
        self.closes: list[datetime] = [ts.to_pydatetime().astimezone(UTC) for ts in calendar.closes]
        self._open_ts = [moment.timestamp() for moment in self.opens]
        self._close_ts = [moment.timestamp() for moment in self.closes]
        self._index_of_day = {day: i for i, day in enumerate(self.days)}

    @classmethod
    def around(cls, moment: datetime, *, years_before: int = 6, years_after: int = 4) -> NyseSessions:
        """Sessions covering a window around `moment` (history for backfills, room for the clock to run)."""
        return _cached_sessions(moment.year - years_before, moment.year + years_after)

    def __len__(self) -> int:
        return len(self.days)

    def _check_in_range(self, ts: float, moment: datetime) -> None:
        if ts < self._open_ts[0] - 7 * 86400 or ts > self._close_ts[-1] + 7 * 86400:
            raise ValueError(
                f"{moment.isoformat()} is outside the simulated calendar "
                f"({self.days[0].isoformat()}..{self.days[-1].isoformat()})"
            )

    def index_of_day(self, day: date) -> int | None:
        return self._index_of_day.get(day)

    def is_open(self, moment: datetime) -> bool:
        ts = _require_aware(moment)
        i = bisect.bisect_right(self._open_ts, ts) - 1
        return i >= 0 and ts < self._close_ts[i]

    def open_session_index(self, moment: datetime) -> int | None:
        """Index of the session in progress at `moment` (open <= moment < close), else None."""
        ts = _require_aware(moment)
        i = bisect.bisect_right(self._open_ts, ts) - 1
        return i if i >= 0 and ts < self._close_ts[i] else None

    def first_closing_after(self, moment: datetime) -> int:
        """Index of the first session whose close is strictly after `moment`: the current or the next session."""
        ts = _require_aware(moment)
        self._check_in_range(ts, moment)
        i = bisect.bisect_right(self._close_ts, ts)
        if i >= len(self.days):
            raise ValueError(f"no session after {moment.isoformat()} in the simulated calendar")
        return i

    def next_open(self, moment: datetime) -> datetime:
        """First open strictly after `moment` (while the market is open, that is tomorrow's open)."""
        ts = _require_aware(moment)
        i = bisect.bisect_right(self._open_ts, ts)
        if i >= len(self.days):
            raise ValueError(f"no open after {moment.isoformat()} in the simulated calendar")
        return self.opens[i]

    def next_close(self, moment: datetime) -> datetime:
        return self.closes[self.first_closing_after(moment)]

    def indices_between(self, start: date, end: date) -> range:
        """Indices of sessions with start <= day <= end (empty when none)."""
        lo = bisect.bisect_left(self.days, start)
        hi = bisect.bisect_right(self.days, end)
        return range(lo, max(lo, hi))

    def is_half_day(self, index: int) -> bool:
        return self.closes[index] - self.opens[index] < timedelta(hours=6)


@lru_cache(maxsize=8)
def _cached_sessions(first_year: int, last_year: int) -> NyseSessions:
    return NyseSessions(date(first_year, 1, 1), date(last_year, 12, 31))
