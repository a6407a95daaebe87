"""One clock: the broker's says whether the market is open now; the exchange calendar cross-checks it and
answers alone when the broker cannot be asked.

Everything that asks "is the market open?" (the stop-loss schedule, the stop-trigger sensor, the health
sensor, pre-flight) asks here, so they cannot disagree with each other; when the broker and the calendar
disagree, that is itself a finding, alerted — never silently resolved in favour of one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from trading_pipeline.broker.base import Broker, BrokerError
from trading_pipeline.domain.calendar import NEW_YORK, session_status
from trading_pipeline.monitoring.health import HealthItem

# Around an open or a close the two may differ by the broker's rounding of the instant: not a disagreement.
BOUNDARY_SLACK = timedelta(seconds=90)
CLOCK_ALERT_KEY = "market_clock"


@dataclass(frozen=True, slots=True)
class MarketView:
    is_open: bool
    at: datetime  # the broker's "now" (or the instant asked about, when the calendar answered alone)
    source: str  # "broker clock", or "exchange calendar (broker clock unreachable: …)"
    calendar_reason: str
    disagreement: str | None = None
    next_open: datetime | None = None
    calendar_open: bool = False

    def closed_reason(self) -> str:
        why = self.calendar_reason
        if self.calendar_open:  # within the boundary slack: the broker has already closed (or not yet opened)
            why = f"at {self.at.astimezone(NEW_YORK):%H:%M:%S ET}, the edge of the {why}"
        nxt = f"; next open {self.next_open.astimezone(NEW_YORK):%a %Y-%m-%d %H:%M ET}" if self.next_open else ""
        return f"market closed ({self.source}): {why}{nxt}"

    def health_item(self) -> HealthItem:
        if self.disagreement:
            return HealthItem(
                "market clock",
                False,
                self.disagreement,
                CLOCK_ALERT_KEY,
                "the broker's clock is followed (it decides whether stop-loss runs go); check the broker's status "
                "page for an unscheduled closure or delayed open, and the machine's time (timedatectl)",
            )
        return HealthItem(
            "market clock", True, f"{'open' if self.is_open else 'closed'} ({self.source})", CLOCK_ALERT_KEY
        )


def _calendar_open(at: datetime) -> bool:
    return session_status(at).in_session


def read_market_clock(broker: Broker, at: datetime) -> MarketView:
    """The broker's answer, cross-checked against the calendar at the broker's own instant; the calendar's
    answer at `at` when the broker's clock cannot be read."""
    try:
        clock = broker.clock()
    except BrokerError as exc:
        status = session_status(at)
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        return MarketView(status.in_session, at, f"exchange calendar; broker clock unreachable: {first}", status.reason)
    status = session_status(clock.timestamp)
    nearby = {_calendar_open(clock.timestamp + offset) for offset in (-BOUNDARY_SLACK, BOUNDARY_SLACK)}
    disagree = status.in_session != clock.is_open and clock.is_open not in nearby
    disagreement = None
    if disagree:
        disagreement = (
            f"the broker's clock says the market is {'OPEN' if clock.is_open else 'CLOSED'} at "
            f"{clock.timestamp.astimezone(NEW_YORK):%Y-%m-%d %H:%M ET}, the exchange calendar says "
            f"{'open' if status.in_session else 'closed'} ({status.reason})"
        )
    return MarketView(
        clock.is_open,
        clock.timestamp,
        "broker clock",
        status.reason,
        disagreement,
        next_open=clock.next_open,
        calendar_open=status.in_session,
    )
