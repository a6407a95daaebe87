"""Alert bookkeeping: de-duplication of repeats within a window, and recovery of cleared conditions.
Each function is one short transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from trading_pipeline.store.database import Database
from trading_pipeline.store.models import AlertRecord, TradingStateChange, utc_now

FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertView:
    id: int
    key: str
    severity: str
    state: str
    title: str
    message: str
    source: str
    occurrences: int
    first_seen_at: datetime
    last_sent_at: datetime | None
    resolved_at: datetime | None
    deliveries: Any


def _view(row: AlertRecord) -> AlertView:
    return AlertView(
        row.id,
        row.key,
        row.severity,
        row.state,
        row.title,
        row.message,
        row.source,
        row.occurrences,
        row.first_seen_at,
        row.last_sent_at,
        row.resolved_at,
        row.deliveries,
    )


def record_firing(
    db: Database,
    *,
    key: str,
    severity: str,
    title: str,
    message: str,
    details: Any,
    source: str,
    now: datetime | None = None,
    dedupe_window: timedelta = timedelta(minutes=30),
) -> tuple[AlertView, bool]:
    """Record an occurrence; returns (alert, should_send). A repeat within the window is counted, not sent."""
    current = now or utc_now()
    with db.transaction() as session:
        row = session.scalar(
            sa.select(AlertRecord)
            .where(AlertRecord.key == key, AlertRecord.state == FIRING)
            .order_by(AlertRecord.id.desc())
            .limit(1)
            .with_for_update()
        )
        if row is None:
            row = AlertRecord(
                key=key,
                severity=severity,
                state=FIRING,
                title=title[:300],
                message=message,
                details=details,
                source=source,
                first_seen_at=current,
                last_seen_at=current,
                last_sent_at=current,
                occurrences=1,
                deliveries={},
            )
            session.add(row)
            session.flush()
            return _view(row), True
        row.occurrences += 1
        row.last_seen_at = current
        row.message = message
        row.details = details
        due = row.last_sent_at is None or current - row.last_sent_at >= dedupe_window
        if due:
            row.last_sent_at = current
        return _view(row), due


def record_resolved(db: Database, key: str, *, now: datetime | None = None) -> AlertView | None:
    """Mark the firing alert with this key resolved; returns it (so a recovery is announced) or None."""
    with db.transaction() as session:
        row = session.scalar(
            sa.select(AlertRecord).where(AlertRecord.key == key, AlertRecord.state == FIRING).with_for_update()
        )
        if row is None:
            return None
        row.state = RESOLVED
        row.resolved_at = now or utc_now()
        return _view(row)


def record_deliveries(db: Database, alert_id: int, deliveries: dict[str, str]) -> None:
    with db.transaction() as session:
        row = session.get(AlertRecord, alert_id)
        if row is not None:
            row.deliveries = {**(row.deliveries or {}), **deliveries}


@dataclass(frozen=True, slots=True)
class ChannelDelivery:
    channel: str
    status: str  # "ok" or "failed: …"
    at: datetime
    alert_key: str


def latest_deliveries(db: Database, channels: list[str], scan: int = 200) -> dict[str, ChannelDelivery]:
    """The most recent delivery outcome per channel. A firing alert's deliveries happened at its last send
    (`last_sent_at`; a re-send overwrites them), a recovery's (`recovery_<channel>`) at `resolved_at`."""
    with db.transaction() as session:
        rows = {
            row.id: row
            for column in (AlertRecord.last_sent_at, AlertRecord.resolved_at)
            for row in session.scalars(
                sa.select(AlertRecord).where(column.is_not(None)).order_by(column.desc()).limit(scan)
            )
        }
        latest: dict[str, ChannelDelivery] = {}
        for row in rows.values():
            deliveries = row.deliveries if isinstance(row.deliveries, dict) else {}
            for channel in channels:
                for at, status in (
                    (row.last_sent_at, deliveries.get(channel)),
                    (row.resolved_at, deliveries.get(f"recovery_{channel}")),
                ):
                    if at is None or not isinstance(status, str):
                        continue
                    if channel not in latest or at > latest[channel].at:
                        latest[channel] = ChannelDelivery(channel, status, at, row.key)
        return latest


def record_test_delivery(db: Database, *, title: str, message: str, deliveries: dict[str, str], now: datetime) -> None:
    """`trading-pipeline alert-test`: kept as a resolved alert, so each channel's last delivery is this one."""
    with db.transaction() as session:
        session.add(
            AlertRecord(
                key="alert-test",
                severity="info",
                state=RESOLVED,
                title=title[:300],
                message=message,
                details={},
                source="trading-pipeline alert-test",
                first_seen_at=now,
                last_seen_at=now,
                last_sent_at=now,
                resolved_at=now,
                occurrences=1,
                deliveries=deliveries,
            )
        )


def firing_alerts(db: Database) -> list[AlertView]:
    with db.transaction() as session:
        rows = session.scalars(sa.select(AlertRecord).where(AlertRecord.state == FIRING).order_by(AlertRecord.id))
        return [_view(r) for r in rows]


def recent_alerts(db: Database, limit: int = 20) -> list[AlertView]:
    with db.transaction() as session:
        rows = session.scalars(sa.select(AlertRecord).order_by(AlertRecord.id.desc()).limit(limit))
        return [_view(r) for r in rows]


@dataclass(frozen=True, slots=True)
class TradingState:
    halted: bool
    actor: str
    reason: str
    changed_at: datetime | None


def current_trading_state(db: Database) -> TradingState:
    """The kill switch: the latest change, or 'trading' when it was never touched."""
    with db.transaction() as session:
        row = session.scalar(sa.select(TradingStateChange).order_by(TradingStateChange.id.desc()).limit(1))
        if row is None:
            return TradingState(False, "default", "never halted", None)
        return TradingState(row.halted, row.actor, row.reason, row.changed_at)


def set_trading_state(db: Database, *, halted: bool, actor: str, reason: str) -> TradingState:
    if not reason.strip():
        raise ValueError("a reason is required for every halt or resume")
    with db.transaction() as session:
        row = TradingStateChange(halted=halted, actor=actor, reason=reason.strip(), changed_at=utc_now())
        session.add(row)
        session.flush()
        return TradingState(row.halted, row.actor, row.reason, row.changed_at)
