"""One clock for a run: the broker's, cross-checked by the exchange calendar, which is also the fallback.

The broker's clock says whether the market is open (it knows unscheduled closures); when it cannot be
reached, the exchange calendar answers instead and the run says so in its metadata — a clock outage must
never stop a stop-loss run. A disagreement (the broker says open on a calendar holiday, or closed in a
calendar session) is reported, and entries refuse to trade on it.

This is the only place that reads the clock: the assets here, and the schedules, sensors and pre-flight through
`monitoring/market_clock.py`, which only words the same reading for a health check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from trading_pipeline.broker.base import Broker, BrokerError, MarketClock
from trading_pipeline.domain.calendar import NEW_YORK, next_open_and_close, session_status

BROKER = "broker"
CALENDAR = "exchange calendar"
# Around an open or a close the two may differ by the broker's rounding of the instant: not a disagreement.
BOUNDARY_SLACK = timedelta(seconds=90)


@dataclass(frozen=True, slots=True)
class ClockReading:
    clock: MarketClock
    source: str  # BROKER or CALENDAR
    calendar_in_session: bool
    calendar_reason: str
    problem: str | None = None  # why the broker's clock was not used
    disagreement: str | None = None  # the broker and the calendar disagree (beyond the boundary slack)

    @property
    def agrees(self) -> bool:
        """The broker's open/closed matches the exchange calendar at the broker's time."""
        return self.disagreement is None

    def metadata(self) -> dict[str, object]:
        return {
            "clock_source": self.source,
            "clock_problem": self.problem or "",
            "market_open": self.clock.is_open,
            "calendar_in_session": self.calendar_in_session,
            "clocks_agree": self.agrees,
        }


def wall_clock() -> datetime:
    """This machine's time: what the calendar is asked at when the broker's clock cannot be read (one place,
    so a test can run the fallback against a simulated broker's time)."""
    return datetime.now(UTC)


def read_clock(broker: Broker, *, now: datetime | None = None) -> ClockReading:
    """The broker's clock, or — when it cannot be reached — the exchange calendar's answer at `now`."""
    try:
        clock = broker.clock()
    except BrokerError as exc:
        at = now or wall_clock()
        calendar = session_status(at)
        next_open, next_close = next_open_and_close(at)
        fallback = MarketClock(timestamp=at, is_open=calendar.in_session, next_open=next_open, next_close=next_close)
        return ClockReading(
            fallback, CALENDAR, calendar.in_session, calendar.reason, problem=f"broker clock unreachable: {exc}"
        )
    calendar = session_status(clock.timestamp)
    return ClockReading(clock, BROKER, calendar.in_session, calendar.reason, disagreement=_disagreement(clock))


def _disagreement(clock: MarketClock) -> str | None:
    calendar = session_status(clock.timestamp)
    if calendar.in_session == clock.is_open:
        return None
    nearby = {session_status(clock.timestamp + offset).in_session for offset in (-BOUNDARY_SLACK, BOUNDARY_SLACK)}
    if clock.is_open in nearby:
        return None  # at the edge of a session: the broker rounds the instant differently
    return (
        f"the broker's clock says the market is {'OPEN' if clock.is_open else 'CLOSED'} at "
        f"{clock.timestamp.astimezone(NEW_YORK):%Y-%m-%d %H:%M ET}, the exchange calendar says "
        f"{'open' if calendar.in_session else 'closed'} ({calendar.reason})"
    )
