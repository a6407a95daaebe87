"""Checks on `health`, judged every 5 minutes by the health job — outside the stop-loss runs, so they still
judge when every stop-loss run fails (then the checks on `closes` are never evaluated at all)."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from trading_pipeline.checks.closes import BUY_SELL_DESCRIPTION, buy_sell_ratio
from trading_pipeline.domain.calendar import NEW_YORK, session_bounds
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.domain.types import OrderSide
from trading_pipeline.monitoring.runs import finished_at, last_success
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

SPECS = [
    dg.AssetCheckSpec(
        "buy_sell_ratio",
        asset="health",
        description=BUY_SELL_DESCRIPTION + " Judged here from outside the stop-loss runs, every 5 minutes.",
    )
]


def buy_sell_outcome(db: Database, instance: dg.DagsterInstance, now: datetime) -> dg.AssetCheckResult:
    """Today's buys and sells (trading DB) against the last successful stop-loss run (Dagster's records)."""
    bounds = session_bounds(now.astimezone(NEW_YORK).date())
    in_session = bounds is not None and bounds[0] <= now <= bounds[1]
    day_start = bounds[0] if bounds is not None else now
    sides = orders_repo.count_orders_by_side(db, since=day_start)
    success = last_success(instance, STOP_LOSS_JOB)
    return buy_sell_ratio(
        sides[OrderSide.BUY],
        sides[OrderSide.SELL],
        open_positions=len(trades_repo.open_trades(db, reuse=True)),
        now=now,
        in_session=in_session,
        first_buy_at=orders_repo.first_order_at(db, OrderSide.BUY, since=day_start),
        last_protected_at=finished_at(success) if success else None,
    )
