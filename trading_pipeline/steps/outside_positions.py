"""Positions at the broker that the pipeline did not open: every share the broker holds is protected, or a
person is told it is not.

Bought in Alpaca's dashboard, transferred in, left from another tool: the reconciliation lists them as "extra
at the broker". What follows is a policy (`TRADING_PIPELINE_OUTSIDE_POSITIONS`):
- `adopt` (the default on a paper account): a trade at the current price with the strategy's default
  stop-loss and take-profit from there (the broker's `avg_entry_price` kept in the audit row), one alert,
  then protected like any other — swept, and sold when it crosses;
- `alert-only` (the default on a live account, where a person's own holdings may sit beside the strategy's):
  one alert a day per position naming it as unprotected; never sold.

Nothing is adopted while the book is in doubt: during a mass disappearance (another account's listing would
be adopted wholesale), or while one of our trades is unconfirmed (the new position may be its shares after a
rename not published yet — re-linked to its trade once the corporate action says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from trading_pipeline.broker.base import Broker, BrokerError, BrokerPosition
from trading_pipeline.domain.calendar import NEW_YORK
from trading_pipeline.domain.exits import InvalidLevels
from trading_pipeline.domain.strategy import price_level
from trading_pipeline.domain.types import PositionSide, TradeStatus
from trading_pipeline.steps.reconcile import Reconciliation, shares
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

ADOPT = "adopt"
ALERT_ONLY = "alert-only"
ADOPTED_STRATEGY = "adopted"


@dataclass
class OutsidePositions:
    adopted: dict[str, str] = field(default_factory=dict)
    unprotected: dict[str, str] = field(default_factory=dict)  # alert-only, or not adopted this run (why)


def handle_outside_positions(
    db: Database,
    broker: Broker,
    positions: list[BrokerPosition],
    reconciliation: Reconciliation,
    *,
    policy: str,
    stop_loss_pct: Decimal,
    take_profit_pct: Decimal,
    now: datetime,
    run_id: str | None,
) -> OutsidePositions:
    result = OutsidePositions()
    held = {p.symbol: p for p in positions}
    extra = [held[s] for s in sorted(reconciliation.extra_at_broker) if s in held]
    if not extra:
        return result
    unconfirmed = {qty: symbol for symbol, qty in reconciliation.unconfirmed_qty.items()}
    for position in extra:
        described = f"{position.side.value} {shares(position.qty)} {position.symbol} at {position.avg_entry_price}"
        doubt = None
        if reconciliation.mass_disappearance:
            doubt = "not adopted: most of our book is missing from this listing (another account?)"
        elif position.qty in unconfirmed:
            doubt = (
                f"not adopted yet: our {unconfirmed[position.qty]} trade of the same quantity is unconfirmed — these "
                "may be its shares under a new symbol"
            )
        if policy != ADOPT or doubt:
            why = doubt or "policy alert-only: never sold by the pipeline"
            result.unprotected[position.symbol] = f"{described}, not opened by the pipeline: UNPROTECTED ({why})"
            continue
        confirmed = _confirm(broker, position)
        if confirmed is not None:
            result.unprotected[position.symbol] = f"{described}: not adopted ({confirmed})"
            continue
        adopted = _adopt(db, position, stop_loss_pct, take_profit_pct, now=now, run_id=run_id)
        if adopted:
            result.adopted[position.symbol] = f"{described} adopted: {adopted}"
        else:
            why = "levels invalid at its price, or another run adopted it"
            result.unprotected[position.symbol] = f"{described}: not adopted ({why})"
    return result


def _confirm(broker: Broker, position: BrokerPosition) -> str | None:
    """Why the listing's position is not to be trusted for an adoption (None: it is). A position the pipeline will
    sell must be the account's: the symbol's own endpoint must show the same side and quantity — a listing that
    answers with another account's book would otherwise be adopted and then sold short."""
    try:
        own = broker.position(position.symbol)
    except BrokerError as exc:
        return f"its own position endpoint is unreadable, tried next run: {exc}"
    if own is None or own.side is not position.side or own.qty != position.qty:
        held = "nothing" if own is None else f"{own.side.value} {shares(own.qty)}"
        return f"the listing says {shares(position.qty)}, GET /v2/positions/{position.symbol} says {held}"
    return None


def _adopt(
    db: Database,
    position: BrokerPosition,
    stop_loss_pct: Decimal,
    take_profit_pct: Decimal,
    *,
    now: datetime,
    run_id: str | None,
) -> str | None:
    price = position.current_price if position.current_price and position.current_price > 0 else None
    price = price or position.avg_entry_price
    long = position.side is PositionSide.LONG
    stop = price_level(price, stop_loss_pct, up=not long)
    take_profit = price_level(price, take_profit_pct, up=long)
    levels = f"stop {stop}, take-profit {take_profit} from {price} at {now.astimezone(NEW_YORK):%Y-%m-%d %H:%M} ET"
    new = trades_repo.NewTrade(
        symbol=position.symbol,
        side=position.side,
        qty=position.qty,
        entry_price=price,
        entry_at=now,
        stop_loss=stop,
        take_profit=take_profit,
        strategy=ADOPTED_STRATEGY,
        status=TradeStatus.OPEN,
    )
    reason = (
        f"held at the broker, not opened by the pipeline (broker's average entry {position.avg_entry_price}): "
        f"adopted with the strategy's default levels — {levels}"
    )
    try:
        done = adjustments_repo.adopt_position(
            db, new, broker_avg_entry=position.avg_entry_price, reason=reason, run_id=run_id
        )
    except InvalidLevels:
        return None
    return levels if done else None
