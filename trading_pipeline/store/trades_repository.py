"""Trades: one row per position lifetime (pending_open → open → closing → closed), in short transactions.

Every function opens its own transaction and commits (or rolls back) before it returns, and returns
plain frozen records, never live ORM objects: nothing can keep a connection checked out, or lazily load
one, while the caller goes on to talk to the broker. Functions here talk to the database only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from trading_pipeline.domain.exits import InvalidLevels, PositionView, validate_levels
from trading_pipeline.domain.types import ExitReason, PositionSide, TradeStatus
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import Trade, utc_now


@dataclass(frozen=True, slots=True)
class TradeRecord:
    id: uuid.UUID
    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    entry_at: datetime
    stop_loss: Decimal | None
    take_profit: Decimal | None
    trailing_pct: Decimal | None
    high_water_mark: Decimal | None
    status: TradeStatus
    strategy: str | None
    open_client_order_id: str | None
    close_reason: ExitReason | None
    close_trigger_price: Decimal | None
    close_price: Decimal | None
    closed_at: datetime | None
    close_client_order_id: str | None
    close_attempts: int
    closing_started_at: datetime | None
    closing_run_id: str | None
    protected: bool = False
    protection_client_order_id: str | None = None
    status_reason: str | None = None
    created_at: datetime | None = None  # when the row was written: before the entry order was sent
    max_age_trading_days: int | None = None  # the strategy's own age limit for this position

    def position_view(self) -> PositionView:
        return PositionView(
            symbol=self.symbol,
            side=self.side,
            qty=self.qty,
            entry_price=self.entry_price,
            opened_at=self.entry_at,
            stop_loss=self.stop_loss,
            take_profit=self.take_profit,
            trailing_pct=self.trailing_pct,
            high_water_mark=self.high_water_mark,
        )


_TRADE_FIELDS = tuple(TradeRecord.__slots__)


def _trade_columns() -> list[Any]:
    """Trade's columns in TradeRecord's order: a row of them is a TradeRecord's arguments."""
    return [getattr(Trade, name) for name in _TRADE_FIELDS]


def trade_record(row: Trade) -> TradeRecord:
    return TradeRecord(**{name: getattr(row, name) for name in _TRADE_FIELDS})


@dataclass(frozen=True, slots=True)
class NewTrade:
    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    entry_at: datetime
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_pct: Decimal | None = None
    strategy: str | None = None
    open_client_order_id: str | None = None
    decision_run_id: uuid.UUID | None = None
    status: TradeStatus = TradeStatus.OPEN
    protected: bool = False
    protection_client_order_id: str | None = None
    max_age_trading_days: int | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def insert_trade(db: Database, new: NewTrade) -> TradeRecord:
    """Store a new trade; InvalidLevels (nothing written) when its quantity or levels are unusable."""
    check_levels(new)
    with db.transaction() as session:
        row = trade_row(new)
        session.add(row)
        session.flush()
        return trade_record(row)


def trade_row(new: NewTrade) -> Trade:
    """The ORM row of a new trade (levels not checked here: `check_levels` first)."""
    return Trade(
        id=new.id,
        symbol=new.symbol,
        side=new.side,
        qty=new.qty,
        entry_price=new.entry_price,
        entry_at=new.entry_at,
        stop_loss=new.stop_loss,
        take_profit=new.take_profit,
        trailing_pct=new.trailing_pct,
        high_water_mark=new.entry_price if new.trailing_pct is not None else None,
        status=new.status,
        strategy=new.strategy,
        open_client_order_id=new.open_client_order_id,
        decision_run_id=new.decision_run_id,
        close_attempts=0,
        protected=new.protected,
        protection_client_order_id=new.protection_client_order_id,
        max_age_trading_days=new.max_age_trading_days,
    )


def check_levels(new: NewTrade) -> None:
    """A long stored with its stop above its entry is "stopped out" by the very next sweep, and qty 0 is an
    order the broker refuses at close time: refuse both before anything is written. Values that are not
    Decimal are left to the column types, which refuse them with their own message."""
    numbers = (new.qty, new.entry_price, new.stop_loss, new.take_profit, new.trailing_pct)
    if not all(value is None or isinstance(value, Decimal) for value in numbers):
        return
    view = PositionView(
        symbol=new.symbol,
        side=new.side,
        qty=new.qty,
        entry_price=new.entry_price,
        opened_at=new.entry_at,
        stop_loss=new.stop_loss,
        trailing_pct=new.trailing_pct,
    )
    validate_levels(view)  # qty, entry, stop (side included) and trailing; the take-profit's side is not judged here
    if new.take_profit is not None and not (new.take_profit.is_finite() and new.take_profit > 0):
        raise InvalidLevels(f"{new.symbol}: take_profit must be a price above 0, got {new.take_profit}")
    if new.max_age_trading_days is not None and new.max_age_trading_days < 1:
        raise InvalidLevels(f"{new.symbol}: max_age_trading_days must be at least 1, got {new.max_age_trading_days}")


def get_trade(db: Database, trade_id: uuid.UUID) -> TradeRecord | None:
    with db.transaction() as session:
        row = session.get(Trade, trade_id)
        return None if row is None else trade_record(row)


READ_PAGE = 500  # rows per read transaction: 10,000 open trades in one took ~400 ms; 1,000 took 30–65 ms in the
# real job at 10,000 positions (bench/RESULTS.md), 500 keeps each page well under 50 ms


def trades_with_status(
    db: Database, status: TradeStatus, symbols: Iterable[str] | None = None, *, reuse: bool = False
) -> list[TradeRecord]:
    """All trades with `status`, read in pages of plain rows, each page its own short transaction.

    Pages are separate snapshots; that is safe because nothing acts on a read without the conditional claim.
    `reuse=True`: the last whole read of this status when nothing wrote a trade since, through this engine,
    and it is a few seconds old at most (store/read_cache.py); for reads that report, never for reads that act."""
    if symbols is not None:
        return _read_pages(db, status, sorted(set(symbols)))
    return list(db.reads.read(("trades", status), "trades", lambda: _read_pages(db, status, None), reuse=reuse))


def _read_pages(db: Database, status: TradeStatus, wanted: list[str] | None) -> list[TradeRecord]:
    columns = _trade_columns()
    records: list[TradeRecord] = []
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        query = sa.select(*columns).where(Trade.status == status).order_by(Trade.entry_at, Trade.id).limit(READ_PAGE)
        if wanted is not None:
            query = query.where(Trade.symbol.in_(wanted))
        if after is not None:
            query = query.where(sa.tuple_(Trade.entry_at, Trade.id) > sa.tuple_(*after))
        with db.transaction() as session:
            rows = session.execute(query).all()
        records.extend(TradeRecord(*row) for row in rows)
        if len(rows) < READ_PAGE:
            return records
        after = (records[-1].entry_at, records[-1].id)


def open_trades(db: Database, symbols: Iterable[str] | None = None, *, reuse: bool = False) -> list[TradeRecord]:
    return trades_with_status(db, TradeStatus.OPEN, symbols, reuse=reuse)


def closing_trades(db: Database, *, reuse: bool = False) -> list[TradeRecord]:
    return trades_with_status(db, TradeStatus.CLOSING, reuse=reuse)


def count_trades_by_status(db: Database) -> dict[TradeStatus, int]:
    with db.transaction() as session:
        rows = session.execute(sa.select(Trade.status, sa.func.count()).group_by(Trade.status)).all()
        counts = {status: 0 for status in TradeStatus}
        counts.update({status: n for status, n in rows})
        return counts


def mark_entry_filled(
    db: Database,
    trade_id: uuid.UUID,
    *,
    client_order_id: str,
    fill_price: Decimal,
    filled_qty: Decimal,
    filled_at: datetime,
) -> bool:
    """pending_open → open with the broker's fill (price, qty, time); False if not pending with that id."""
    with db.transaction() as session:
        row = session.scalar(
            sa.select(Trade)
            .where(
                Trade.id == trade_id,
                Trade.status == TradeStatus.PENDING_OPEN,
                Trade.open_client_order_id == client_order_id,
            )
            .with_for_update()
        )
        if row is None:
            return False
        row.status = TradeStatus.OPEN
        row.entry_price = fill_price
        row.qty = filled_qty
        row.entry_at = filled_at
        if row.trailing_pct is not None:
            row.high_water_mark = fill_price
        return True


def cancel_pending_entry(db: Database, trade_id: uuid.UUID, *, client_order_id: str, reason: str | None = None) -> bool:
    """pending_open → cancelled: the entry order provably never filled (rejected, cancelled, absent); `reason`
    is what the broker said (its final status), kept on the trade."""
    with db.transaction() as session:
        result = session.execute(
            sa.update(Trade)
            .where(
                Trade.id == trade_id,
                Trade.status == TradeStatus.PENDING_OPEN,
                Trade.open_client_order_id == client_order_id,
            )
            .values(status=TradeStatus.CANCELLED, status_reason=reason, updated_at=utc_now())
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1


def set_protection(db: Database, trade_id: uuid.UUID, client_order_id: str) -> None:
    """Point the trade at its current protective order (bracket entry or re-created OCO)."""
    with db.transaction() as session:
        session.execute(
            sa.update(Trade)
            .where(Trade.id == trade_id)
            .values(protected=True, protection_client_order_id=client_order_id, updated_at=utc_now())
            .execution_options(synchronize_session=False)
        )


def update_high_water_marks(db: Database, marks: Mapping[uuid.UUID, Decimal]) -> int:
    """Persist new high-water marks for open trades (trailing stops ratchet; they never move back —
    the caller computes the new mark with domain.exits.next_high_water_mark)."""
    if not marks:
        return 0
    updated = 0
    with db.transaction() as session:
        for trade_id, mark in marks.items():
            result = session.execute(
                sa.update(Trade)
                .where(Trade.id == trade_id, Trade.status == TradeStatus.OPEN)
                .values(high_water_mark=mark)
                .execution_options(synchronize_session=False)
            )
            updated += result.rowcount
    return updated


# -- reads for outcomes and the checks ------------------------------------------------------------


def closes_by_reason(db: Database, *, since: datetime | None = None) -> dict[str, int]:
    with db.transaction() as session:
        query = (
            sa.select(Trade.close_reason, sa.func.count())
            .where(Trade.status == TradeStatus.CLOSED)
            .group_by(Trade.close_reason)
        )
        if since is not None:
            query = query.where(Trade.closed_at >= since)
        return {(reason.value if reason else "unknown"): n for reason, n in session.execute(query).all()}


def entered_notional_since(db: Database, since: datetime) -> Decimal:
    """qty × entry price of every entry made since `since` that was not cancelled (the daily notional limit).
    Summed here, not in SQL: money is exact text on SQLite, and SQL would sum it as floats."""
    with db.transaction() as session:
        rows = session.execute(
            sa.select(Trade.qty, Trade.entry_price).where(
                Trade.entry_at >= since, Trade.status != TradeStatus.CANCELLED
            )
        ).all()
    return sum((qty * price for qty, price in rows), Decimal(0))


def oldest_open_entry(db: Database) -> datetime | None:
    with db.transaction() as session:
        return session.scalar(sa.select(sa.func.min(Trade.entry_at)).where(Trade.status == TradeStatus.OPEN))


def trades_active_since(db: Database, since: datetime) -> list[TradeRecord]:
    """Trades that were open at some point since `since`: still open/closing, or closed after it."""
    query = (
        sa.select(*_trade_columns())
        .where(
            sa.or_(
                Trade.status.in_([TradeStatus.OPEN, TradeStatus.CLOSING]),
                sa.and_(Trade.status == TradeStatus.CLOSED, Trade.closed_at >= since),
            )
        )
        .order_by(Trade.entry_at, Trade.id)
    )
    with db.transaction() as session:
        rows = session.execute(query).all()
    return [TradeRecord(*row) for row in rows]


def closed_trades_since(db: Database, since: datetime) -> list[TradeRecord]:
    query = (
        sa.select(*_trade_columns())
        .where(Trade.status == TradeStatus.CLOSED, Trade.closed_at >= since)
        .order_by(Trade.closed_at)
    )
    with db.transaction() as session:  # plain rows: no ORM objects built inside the transaction
        rows = session.execute(query).all()
    return [TradeRecord(*row) for row in rows]


def trades_by_ids(db: Database, trade_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, TradeRecord]:
    """The current rows of a few trades (the day's open stop crosses), as plain records."""
    wanted = sorted(set(trade_ids))
    if not wanted:
        return {}
    columns = _trade_columns()
    with db.transaction() as session:
        rows = session.execute(sa.select(*columns).where(Trade.id.in_(wanted))).all()
    return {record.id: record for record in (TradeRecord(*row) for row in rows)}
