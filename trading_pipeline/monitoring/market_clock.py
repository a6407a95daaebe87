"""One clock: the broker's says whether the market is open now; the exchange calendar cross-checks it and
answers alone when the broker cannot be asked.

Everything that asks "is the market open?" (the stop-loss schedule, the stop-trigger sensor, the health
sensor, pre-flight) asks here, so they cannot disagree with each other; when the broker and the calendar
disagree, that is itself a finding, alerted — never silently resolved in favour of one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from trading_pipeline.broker.base import Broker
from trading_pipeline.domain.calendar import NEW_YORK
from trading_pipeline.monitoring.health import HealthItem
from trading_pipeline.steps.clock import CALENDAR, read_clock

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


def read_market_clock(broker: Broker, at: datetime) -> MarketView:
    """The run's one clock reading (`steps.clock.read_clock`: the broker's answer cross-checked against the
    calendar at the broker's own instant; the calendar's answer at `at` when the broker's clock cannot be read),
    worded for schedules, sensors and pre-flight."""
    reading = read_clock(broker, now=at)
    if reading.source == CALENDAR:
        problem = (reading.problem or "").removeprefix("broker clock unreachable: ").strip()
        first = problem.splitlines()[0][:160] if problem else "no answer"
        return MarketView(
            reading.clock.is_open,
            at,
            f"exchange calendar; broker clock unreachable: {first}",
            reading.calendar_reason,
            next_open=reading.clock.next_open,
            calendar_open=reading.calendar_in_session,
        )
    return MarketView(
        reading.clock.is_open,
        reading.clock.timestamp,
        "broker clock",
        reading.calendar_reason,
        reading.disagreement,
        next_open=reading.clock.next_open,
        calendar_open=reading.calendar_in_session,
    )
