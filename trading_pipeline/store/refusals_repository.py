"""Exits the broker refused for a lasting reason: when each may be sent again (`models.ExitRefusal`).

Written by the close step (one short transaction per refusal), read by the close step and the stop-trigger
sensor so a refused exit is re-sent at a bounded cadence, not every 10 s; cleared when the exit is accepted or
the position is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from trading_pipeline.store.database import Database
from trading_pipeline.store.models import ExitRefusal


@dataclass(frozen=True, slots=True)
class RefusalRecord:
    symbol: str
    trade_id: uuid.UUID | None
    first_refused_at: datetime
    last_refused_at: datetime
    retry_after: datetime
    attempts: int
    code: int | None
    cause: str
    message: str


def _record(row: ExitRefusal) -> RefusalRecord:
    return RefusalRecord(
        row.symbol,
        row.trade_id,
        row.first_refused_at,
        row.last_refused_at,
        row.retry_after,
        row.attempts,
        row.code,
        row.cause,
        row.message,
    )


def record_refusal(
    db: Database,
    *,
    symbol: str,
    trade_id: uuid.UUID | None,
    now: datetime,
    retry_after: datetime,
    status: int | None,
    code: int | None,
    cause: str,
    message: str,
    run_id: str | None,
) -> RefusalRecord:
    """Insert the symbol's refusal, or count one more attempt on it. Returns the row as it now is
    (`attempts == 1`: a new refusal, the one a person is alerted about)."""
    with db.transaction() as session:
        row = session.get(ExitRefusal, symbol)
        if row is None:
            row = ExitRefusal(symbol=symbol, first_refused_at=now, attempts=0)
            session.add(row)
        row.trade_id = trade_id
        row.last_refused_at = now
        row.retry_after = retry_after
        row.attempts = (row.attempts or 0) + 1
        row.status, row.code = status, code
        row.cause, row.message = cause[:200], message
        row.dagster_run_id = run_id
        session.flush()
        return _record(row)


def refusals(db: Database, symbols: Iterable[str] | None = None) -> dict[str, RefusalRecord]:
    statement = sa.select(ExitRefusal)
    if symbols is not None:
        statement = statement.where(ExitRefusal.symbol.in_(sorted(set(symbols))))
    with db.transaction() as session:
        return {row.symbol: _record(row) for row in session.scalars(statement)}


def clear_refusals(db: Database, symbols: Iterable[str]) -> list[str]:
    """Forget the refusals of these symbols (their exit was accepted); returns the symbols that had one."""
    wanted = sorted(set(symbols))
    if not wanted:
        return []
    with db.transaction() as session:
        had = sorted(session.scalars(sa.select(ExitRefusal.symbol).where(ExitRefusal.symbol.in_(wanted))))
        if had:
            session.execute(sa.delete(ExitRefusal).where(ExitRefusal.symbol.in_(had)))
        return had
