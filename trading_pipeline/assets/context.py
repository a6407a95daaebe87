"""What every asset needs from its resources: the run's DB, and a broker whose every call is guarded
by the DB monitor (so a connection held during a broker call is counted, and a check can fail on it)."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from trading_pipeline.broker.base import Broker, MarketClock
from trading_pipeline.broker.guarded import GuardedBroker
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase

NEW_YORK = ZoneInfo("America/New_York")


def guarded_broker(broker: BrokerResource, database: TradingDatabase) -> Broker:
    return GuardedBroker(broker.client(), database.db.monitor.broker_call)  # type: ignore[return-value]


def trading_date(clock: MarketClock) -> date:
    """The exchange's calendar day at the broker's clock."""
    return clock.timestamp.astimezone(NEW_YORK).date()
