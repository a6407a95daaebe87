"""The day's outcome aggregates (outcome_days, outcome_crosses): each stop-loss run folds in its own data in
one short transaction, so the outcome checks read one row plus the crosses still open or late — not every
earlier run's quotes. Functions here talk to the database only; the fold itself is `checks/crosses.py`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from trading_pipeline.store.database import Database
from trading_pipeline.store.models import OutcomeCross, OutcomeDay, utc_now


class CrossState(StrEnum):
    OUTSTANDING = "OUTSTANDING"  # crossed, not closed yet
    IN_TIME = "IN_TIME"  # closed within the allowed runs (or by something outside today's stop-loss runs)
    LATE = "LATE"  # closed, but later than allowed: stays a problem for the rest of the day
    BROKER_STOP = "BROKER_STOP"  # the broker's own stop closed it: not a cross the sweep owed a close for


@dataclass(frozen=True, slots=True)
class CrossRecord:
    trade_id: uuid.UUID
    symbol: str
    entry_at: datetime
    run_index: int
    crossed_at: datetime
    state: CrossState
    note: str | None = None


@dataclass(frozen=True, slots=True)
class DayOutcome:
    """What the checks need of the day so far: counters plus the crosses still open or late, by entry time."""

    trading_day: date
    runs_applied: int
    last_run_id: str | None
    crosses_closed_in_time: int
    crosses: tuple[CrossRecord, ...]


LIVE_STATES = (CrossState.OUTSTANDING, CrossState.LATE)


def read_day(db: Database, trading_day: date) -> DayOutcome:
    with db.transaction() as session:
        row = session.get(OutcomeDay, trading_day)
        crosses = session.execute(
            sa.select(
                OutcomeCross.trade_id,
                OutcomeCross.symbol,
                OutcomeCross.entry_at,
                OutcomeCross.run_index,
                OutcomeCross.crossed_at,
                OutcomeCross.state,
                OutcomeCross.note,
            )
            .where(OutcomeCross.trading_day == trading_day, OutcomeCross.state.in_([s.value for s in LIVE_STATES]))
            .order_by(OutcomeCross.entry_at, OutcomeCross.trade_id)
        ).all()
        records = tuple(
            CrossRecord(c.trade_id, c.symbol, c.entry_at, c.run_index, c.crossed_at, CrossState(c.state), c.note)
            for c in crosses
        )
        if row is None:
            return DayOutcome(trading_day, 0, None, 0, records)
        return DayOutcome(trading_day, row.runs_applied, row.last_run_id, row.crosses_closed_in_time, records)


def apply_run(
    db: Database,
    seen: DayOutcome,
    *,
    run_id: str,
    new_crosses: Sequence[CrossRecord],
    resolved: Mapping[uuid.UUID, tuple[CrossState, str | None]],
    closed_in_time: int,
) -> bool:
    """Fold one run's outcome into the day, in one short transaction. Optimistic: applies only if nobody folded
    a run in since `seen` was read (False then: that run's fold stands, this one is dropped, never doubled)."""
    now = utc_now()
    with db.transaction() as session:
        if seen.last_run_id is None and seen.runs_applied == 0:
            session.execute(_insert_ignore(session, OutcomeDay, [_day_row(seen.trading_day, now)]))
        changed = session.execute(
            sa.update(OutcomeDay)
            .where(OutcomeDay.trading_day == seen.trading_day, OutcomeDay.runs_applied == seen.runs_applied)
            .values(
                runs_applied=OutcomeDay.runs_applied + 1,
                last_run_id=run_id,
                crosses_closed_in_time=OutcomeDay.crosses_closed_in_time + closed_in_time,
                updated_at=now,
            )
        ).rowcount
        if changed != 1:
            session.rollback()
            return False
        if new_crosses:
            session.execute(
                _insert_ignore(session, OutcomeCross, [_cross_row(seen.trading_day, c, now) for c in new_crosses])
            )
        for trade_id, (state, note) in resolved.items():
            session.execute(
                sa.update(OutcomeCross)
                .where(OutcomeCross.trading_day == seen.trading_day, OutcomeCross.trade_id == trade_id)
                .values(state=state.value, note=note, updated_at=now)
            )
        return True


def count_crosses(db: Database, trading_day: date) -> dict[CrossState, int]:
    """Crosses of the day by state (for status pages and tests; the checks use the counters instead)."""
    with db.transaction() as session:
        rows = session.execute(
            sa.select(OutcomeCross.state, sa.func.count())
            .where(OutcomeCross.trading_day == trading_day)
            .group_by(OutcomeCross.state)
        ).all()
        counts = {state: 0 for state in CrossState}
        counts.update({CrossState(state): n for state, n in rows})
        return counts


def _day_row(trading_day: date, now: datetime) -> dict[str, object]:
    return {"trading_day": trading_day, "runs_applied": 0, "crosses_closed_in_time": 0, "updated_at": now}


def _cross_row(trading_day: date, cross: CrossRecord, now: datetime) -> dict[str, object]:
    return {
        "trading_day": trading_day,
        "trade_id": cross.trade_id,
        "symbol": cross.symbol,
        "entry_at": cross.entry_at,
        "run_index": cross.run_index,
        "crossed_at": cross.crossed_at,
        "state": cross.state.value,
        "note": cross.note,
        "updated_at": now,
    }


def _insert_ignore(session: sa.orm.Session, model: type, rows: Iterable[dict[str, object]]) -> sa.Executable:
    """INSERT … ON CONFLICT DO NOTHING on both backends: a second writer of the same key changes nothing."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(model).values(list(rows)).on_conflict_do_nothing()
