"""NYSE sessions, holidays and half days from exchange-calendars (XNYS) — never a hand-written list.

Schedules and sensors ask one question: is `at` inside a regular session, and if not, why not? The
answer names the reason a trader would give ("Thanksgiving", "after today's early close at 13:00 ET").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")
REGULAR_CLOSE_HOUR = 16


@functools.cache
def nyse() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS")


@dataclass(frozen=True, slots=True)
class SessionStatus:
    at: datetime
    trading_day: bool
    in_session: bool
    reason: str
    session_open: datetime | None = None
    session_close: datetime | None = None

    @property
    def early_close(self) -> bool:
        return self.session_close is not None and self.session_close.astimezone(NEW_YORK).hour < REGULAR_CLOSE_HOUR


def _et(moment: datetime) -> str:
    return moment.astimezone(NEW_YORK).strftime("%H:%M ET")


def holiday_name(day: date) -> str | None:
    calendar = nyse()
    stamp = pd.Timestamp(day)
    named = calendar.regular_holidays.holidays(stamp, stamp, return_name=True)
    if len(named):
        return str(named.iloc[0])
    if any(pd.Timestamp(h).date() == day for h in calendar.adhoc_holidays):
        return "special closure"
    return None


def session_bounds(day: date) -> tuple[datetime, datetime] | None:
    calendar = nyse()
    stamp = pd.Timestamp(day)
    if not calendar.is_session(stamp):
        return None
    return (
        calendar.session_open(stamp).to_pydatetime(),
        calendar.session_close(stamp).to_pydatetime(),
    )


def session_status(at: datetime) -> SessionStatus:
    """Whether `at` (timezone-aware) is within [open, close] of an NYSE session, and why not if not."""
    if at.tzinfo is None:
        raise ValueError("session_status needs a timezone-aware datetime")
    local = at.astimezone(NEW_YORK)
    day = local.date()
    weekday = local.strftime("%A")
    bounds = session_bounds(day)
    if bounds is None:
        if local.weekday() >= 5:
            reason = f"{weekday} {day}: no NYSE session on weekends"
        else:
            name = holiday_name(day) or "no session"
            reason = f"{weekday} {day} is an NYSE holiday ({name})"
        return SessionStatus(at, trading_day=False, in_session=False, reason=reason)
    opened, closed = bounds
    status = functools.partial(SessionStatus, at, True, session_open=opened, session_close=closed)
    if at < opened:
        return status(False, f"{_et(at)} is before the NYSE open at {_et(opened)}")
    if at > closed:
        half = " (half day)" if closed.astimezone(NEW_YORK).hour < REGULAR_CLOSE_HOUR else ""
        which = "today's early NYSE close" if half else "the NYSE close"
        return status(False, f"{_et(at)} is after {which} at {_et(closed)}{half}")
    return status(True, f"NYSE session {_et(opened)}–{_et(closed)}")


def trading_days_between(start: date, end: date) -> int:
    """Sessions strictly after `start` up to and including `end` (0 when end ≤ start)."""
    if end <= start:
        return 0
    sessions = nyse().sessions_in_range(pd.Timestamp(start + timedelta(days=1)), pd.Timestamp(end))
    return len(sessions)


def next_open_and_close(at: datetime) -> tuple[datetime, datetime]:
    """The next session open and close after `at` by the exchange calendar (what a broker clock reports as
    next_open / next_close; during a session next_open is tomorrow's and next_close today's)."""
    calendar = nyse()
    stamp = pd.Timestamp(at).tz_convert("UTC")
    return calendar.next_open(stamp).to_pydatetime(), calendar.next_close(stamp).to_pydatetime()


def sessions_before(day: date, count: int) -> list[date]:
    """The `count` NYSE sessions before `day` (not including it), oldest first."""
    if count <= 0:
        return []
    # Two calendar days per session plus a fortnight covers any run of holidays the NYSE has had.
    start = pd.Timestamp(day - timedelta(days=2 * count + 14))
    sessions = nyse().sessions_in_range(start, pd.Timestamp(day - timedelta(days=1)))
    return [session.date() for session in sessions[-count:]]


def session_open_now(now: datetime) -> datetime:
    """A session instant to run a simulated market from so that it is open *now*: `now` itself during a
    session, else the open of the latest session before it (replayed from its open at wall-clock speed)."""
    if session_status(now).in_session:
        return now
    day = now.astimezone(NEW_YORK).date()
    for back in range(0, 15):
        bounds = session_bounds(day - timedelta(days=back))
        if bounds is not None and bounds[0] <= now:
            return bounds[0]
    raise ValueError(f"no NYSE session in the 15 days before {now.isoformat()}")
