"""What every asset needs from its resources: the run's DB, and a broker whose every call is guarded
by the DB monitor (so a connection held during a broker call is counted, and a check can fail on it)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg

from trading_pipeline.broker.base import Broker, MarketClock
from trading_pipeline.broker.guarded import GuardedBroker
from trading_pipeline.domain.calendar import session_bounds
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase

NEW_YORK = ZoneInfo("America/New_York")


def guarded_broker(broker: BrokerResource, database: TradingDatabase) -> Broker:
    return GuardedBroker(broker.client(), database.db.monitor.broker_call)  # type: ignore[return-value]


def trading_date(clock: MarketClock) -> date:
    """The exchange's calendar day at the broker's clock."""
    return clock.timestamp.astimezone(NEW_YORK).date()


def day_start(day: date, now: datetime) -> datetime:
    """Where "today" begins for P&L and BUY:SELL: the session's open, or midnight New York without one."""
    bounds = session_bounds(day)
    return bounds[0] if bounds else min(now, datetime(day.year, day.month, day.day, tzinfo=NEW_YORK))


def alert_daily_loss(
    alerts: AlertsResource, database: TradingDatabase, context: dg.AssetExecutionContext, detail: str
) -> None:
    alerts.dispatcher(database.db, context.log).fire(
        "risk:daily_loss",
        "daily loss limit breached — trading HALTED",
        f"{detail}. No new entries until `trading-pipeline resume --reason ...`; stop-losses keep running.",
        severity="critical",
        source=context.asset_key.to_user_string(),
    )
