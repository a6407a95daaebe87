"""Daily partitions over NYSE trading days only: weekends and exchange holidays are not partitions at all.

Dagster's `DailyPartitionsDefinition` takes `exclusions` (cron strings and datetimes): weekends are one cron
string, holidays are the weekdays that exchange-calendars' XNYS calendar has no session for — derived from
the library, never written by hand. The holiday list reaches to the end of next year and is recomputed
when the code location loads, so it only changes once a year (a changing partitions definition would show
as a code change in the UI every day).
"""

from datetime import date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import dagster as dg
import exchange_calendars as xcals

NEW_YORK = "America/New_York"
CALENDAR_NAME = "XNYS"
FIRST_DAY = date(2025, 1, 1)  # same start as the `universe` partitions
WEEKENDS = "0 0 * * 6,0"  # midnight New York on Saturdays and Sundays: a daily window's start


def calendar_horizon(today: date | None = None) -> date:
    """Last day the holiday exclusions cover: 31 December of next year."""
    return date((today or date.today()).year + 1, 12, 31)


@cache
def _sessions_of_years(first_year: int, last_year: int) -> tuple[date, ...]:
    calendar = xcals.get_calendar(CALENDAR_NAME, start=f"{first_year}-01-01", end=f"{last_year}-12-31")
    return tuple(ts.date() for ts in calendar.sessions)


def nyse_sessions(first: date, last: date) -> list[date]:
    """NYSE sessions from `first` to `last`, both included."""
    # Whole years, one calendar build per span: the calendar's own bounds are its first and last session.
    sessions = _sessions_of_years(min(first.year, FIRST_DAY.year) - 1, max(last.year, calendar_horizon().year))
    return [day for day in sessions if first <= day <= last]


def weekday_holidays(first: date, last: date) -> list[date]:
    """Monday–Friday dates without an NYSE session (holidays and special closures)."""
    sessions = set(nyse_sessions(first, last))
    weekdays = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [day for day in weekdays if day.weekday() < 5 and day not in sessions]


def is_trading_day(day: date) -> bool:
    return nyse_sessions(day, day) == [day]


def previous_trading_day(day: date) -> date:
    """The NYSE session before `day` (which need not be a session itself)."""
    sessions = nyse_sessions(day - timedelta(days=14), day - timedelta(days=1))
    if not sessions:  # cannot happen: no two-week NYSE closure in the calendar's range
        raise ValueError(f"no NYSE session in the two weeks before {day}")
    return sessions[-1]


def trading_day_partitions_definition(horizon: date | None = None) -> dg.DailyPartitionsDefinition:
    tz = ZoneInfo(NEW_YORK)
    holidays = weekday_holidays(FIRST_DAY, horizon or calendar_horizon())
    return dg.DailyPartitionsDefinition(
        start_date=FIRST_DAY.isoformat(),
        timezone=NEW_YORK,
        # end_offset=1: today's partition exists during the session, so the 16:15 run can target it.
        end_offset=1,
        exclusions=[WEEKENDS, *(datetime(d.year, d.month, d.day, tzinfo=tz) for d in holidays)],
    )


trading_day_partitions = trading_day_partitions_definition()


def trading_day_keys(first: date, last: date, partitions: dg.PartitionsDefinition | None = None) -> list[str]:
    """Partition keys of the trading days from `first` to `last` (the range a backfill targets)."""
    definition = partitions or trading_day_partitions
    keys = definition.get_partition_keys_in_range(dg.PartitionKeyRange(first.isoformat(), last.isoformat()))
    return list(keys)
