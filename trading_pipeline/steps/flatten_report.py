"""What a flatten did, position by position, in a person's words: the lines the CLI prints and the job's metadata
shows, and the alert. Reads the DB and the broker's answer; decides nothing about what to send."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from trading_pipeline.broker.base import Broker, BrokerError, BrokerOrder, BrokerPosition
from trading_pipeline.domain.calendar import NEW_YORK
from trading_pipeline.domain.types import PositionSide, TradeStatus
from trading_pipeline.steps.clock import ClockReading
from trading_pipeline.steps.orders import is_dead, order_fields
from trading_pipeline.steps.reconcile import shares
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import TradingState
from trading_pipeline.store.database import Database

CLOSED = "closed"
QUEUED = "queued"
CLOSING = "closing"  # accepted in a session, not filled yet
ALREADY = "already closing"
REFUSED = "refused"
FLAT = "flat"


class AlertSender(Protocol):
    def fire(self, key: str, title: str, message: str, *, severity: str, source: str, details: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class FlattenLine:
    """One position (or part of one) and what became of it."""

    symbol: str
    held: str  # what the broker held when the flatten started, e.g. "10 long"
    whose: str  # "pipeline" (a trade of ours) or "outside" (no trade of ours holds it)
    outcome: str  # CLOSED, QUEUED, CLOSING, ALREADY, REFUSED or FLAT
    detail: str
    client_order_id: str = ""


@dataclass
class FlattenResult:
    reason: str
    actor: str
    halted: TradingState | None = None
    clock: ClockReading | None = None
    lines: list[FlattenLine] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # orders cancelled, described (outside ones say so)
    orders_sent: int = 0

    @property
    def refused(self) -> dict[str, str]:
        return {f"{line.symbol} ({line.whose})": line.detail for line in self.lines if line.outcome == REFUSED}

    @property
    def ok(self) -> bool:
        """Everything is flat, or its closing order was accepted (filled, queued, or working)."""
        return not self.refused

    def next_open(self) -> str:
        if self.clock is None:
            return "the next open"
        return f"{self.clock.clock.next_open.astimezone(NEW_YORK):%Y-%m-%d %H:%M} ET"


def held_text(position: BrokerPosition | None) -> str:
    return "flat" if position is None else f"{shares(position.qty)} {position.side.value}"


def order_outcome(order: BrokerOrder, result: FlattenResult) -> tuple[str, str]:
    """How a closing order stands, in a person's words: a DAY market order sent while the market is closed is
    queued by the broker to the next open — not closed."""
    verb = "sell" if order.side.value == "sell" else "buy back"
    if order.is_filled:
        done = "sold" if verb == "sell" else "bought back"
        return CLOSED, f"{done} {shares(order.filled_qty)} @ {order.filled_avg_price}"
    if is_dead(order):
        return REFUSED, f"the closing order ended {order.status} at the broker"
    if result.clock is not None and not result.clock.clock.is_open:
        return QUEUED, f"market closed: {verb} {shares(order.qty)} queued for the next open at {result.next_open()}"
    return CLOSING, f"{verb} {shares(order.qty)} accepted ({order.status}), not filled yet"


def trade_line(
    db: Database, trade: trades_repo.TradeRecord, held_before: str, sweep: SweepResult, result: FlattenResult
) -> FlattenLine:
    current = trades_repo.get_trade(db, trade.id) or trade
    cid = current.close_client_order_id or ""
    failure = sweep.failures.get(trade.symbol) or sweep.refused.get(trade.symbol)
    if current.status is TradeStatus.CLOSED:
        price = f" @ {current.close_price}" if current.close_price is not None else ""
        detail = f"closed {shares(current.qty)}{price}, reason {current.close_reason}"
        return FlattenLine(trade.symbol, held_before, "pipeline", CLOSED, detail, cid)
    if failure is not None:
        if current.protected and current.status is TradeStatus.OPEN:
            # Its legs were cancelled to free the shares: the next stop-loss run's protection step re-arms them.
            failure += " — its bracket legs were cancelled: the next stop-loss run re-arms them"
        return FlattenLine(trade.symbol, held_before, "pipeline", REFUSED, failure, cid)
    recorded = orders_repo.get_order(db, cid) if current.status is TradeStatus.CLOSING and cid else None
    if recorded is None:  # the claim was lost: an overlapping stop-loss run owns this close
        return FlattenLine(trade.symbol, held_before, "pipeline", ALREADY, "another run is closing it", cid)
    if result.clock is not None and not result.clock.clock.is_open:
        verb = "sell" if current.side is PositionSide.LONG else "buy back"
        detail = f"market closed: {verb} {shares(current.qty)} queued for the next open at {result.next_open()}"
        return FlattenLine(trade.symbol, held_before, "pipeline", QUEUED, detail, cid)
    detail = f"closing order accepted ({recorded.status}), not filled yet"
    return FlattenLine(trade.symbol, held_before, "pipeline", CLOSING, detail, cid)


def outside_line(
    db: Database,
    broker: Broker,
    position: BrokerPosition,
    qty: Decimal,
    order: BrokerOrder | None,
    problem: str,
    result: FlattenResult,
) -> FlattenLine:
    held = held_text(position)
    if order is None:
        return FlattenLine(position.symbol, held, "outside", REFUSED, problem)
    if not order.is_terminal:
        try:
            order = broker.order_by_id(order.id) or order
            orders_repo.upsert_order(db, order_fields(order, None))
        except BrokerError:
            pass  # reported as the broker answered the submit
    outcome, detail = order_outcome(order, result)
    if problem == ALREADY and outcome in (QUEUED, CLOSING):
        outcome, detail = ALREADY, f"its closing order {order.client_order_id} is already working: not sold again"
        return FlattenLine(position.symbol, held, "outside", outcome, detail, order.client_order_id)
    detail = f"{detail} (bought outside the pipeline: {shares(qty)}; audit row written)"
    return FlattenLine(position.symbol, held, "outside", outcome, detail, order.client_order_id)


def alert(alerts: AlertSender, result: FlattenResult) -> None:
    lines = "; ".join(f"{line.symbol} {line.whose}: {line.outcome} — {line.detail}" for line in result.lines)
    refused = result.refused
    title = (
        f"FLATTEN by {result.actor}: {len(refused)} position(s) NOT closed"
        if refused
        else f"book flattened by {result.actor}: {len(result.lines)} position(s)"
    )
    alerts.fire(
        f"flatten:{uuid.uuid4().hex[:12]}",  # every flatten is its own incident: never de-duplicated away
        title,
        f"Why: {result.reason}. Entries are halted. {lines or 'Nothing was held.'}"
        + (f" Cancelled: {'; '.join(result.cancelled)}." if result.cancelled else ""),
        severity="critical" if refused else "warning",
        source="flatten",
        details={"reason": result.reason, "actor": result.actor, "refused": refused, "at": datetime.now(UTC)},
    )
