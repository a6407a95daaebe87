"""What each run saw and decided: the day's universe sample (with its seed), the quotes each run fetched,
and decision-run metadata (JSON-safe). Each function is one short transaction (quote inserts are paged)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from trading_pipeline.domain.types import Quote
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import DecisionRun, QuoteRecord, UniverseSnapshot, utc_now
from trading_pipeline.store.upsert import upsert


def save_universe_snapshot(
    db: Database, *, trading_date: date, seed: int, universe_size: int, symbols: Sequence[str]
) -> None:
    """Store the day's sample; re-running the same day replaces it (idempotent partitions)."""
    values = {
        "trading_date": trading_date,
        "seed": seed,
        "universe_size": universe_size,
        "symbols": list(symbols),
        "created_at": utc_now(),
    }
    with db.transaction() as session:
        upsert(session, UniverseSnapshot, [values], key="trading_date")


@dataclass(frozen=True, slots=True)
class UniverseRecord:
    trading_date: date
    seed: int
    universe_size: int
    symbols: tuple[str, ...]


def get_universe_snapshot(db: Database, trading_date: date) -> UniverseRecord | None:
    with db.transaction() as session:
        row = session.scalar(sa.select(UniverseSnapshot).where(UniverseSnapshot.trading_date == trading_date))
        if row is None:
            return None
        return UniverseRecord(row.trading_date, row.seed, row.universe_size, tuple(row.symbols))


WRITE_PAGE = 500  # rows per insert transaction


def save_quotes(db: Database, quotes: Iterable[Quote], *, run_id: str | None) -> int:
    rows = [
        {"symbol": q.symbol, "bid": q.bid, "ask": q.ask, "quoted_at": q.timestamp, "dagster_run_id": run_id}
        for q in quotes
    ]
    for start in range(0, len(rows), WRITE_PAGE):
        with db.transaction() as session:
            session.execute(sa.insert(QuoteRecord), rows[start : start + WRITE_PAGE])
    return len(rows)


def quotes_for_run(db: Database, run_id: str) -> dict[str, Quote]:
    """The latest quote per symbol stored by one Dagster run (entries reuse the quotes step's fetch)."""
    query = (
        sa.select(QuoteRecord.symbol, QuoteRecord.bid, QuoteRecord.ask, QuoteRecord.quoted_at)
        .where(QuoteRecord.dagster_run_id == run_id)
        .order_by(QuoteRecord.quoted_at, QuoteRecord.id)
    )
    with db.transaction() as session:  # plain rows, not ORM objects: 2,000 quotes in a few ms
        rows = session.execute(query).all()
    return {symbol: Quote(symbol, bid, ask, quoted_at) for symbol, bid, ask, quoted_at in rows}


def quotes_of_runs(db: Database, run_ids: Sequence[str], symbols: Iterable[str]) -> list[tuple[str, Quote]]:
    """(run id, quote) for the given runs and symbols, in quote-time order (the replay of the day's crosses)."""
    wanted = sorted(set(symbols))
    if not run_ids or not wanted:
        return []
    with db.transaction() as session:
        rows = session.scalars(
            sa.select(QuoteRecord)
            .where(QuoteRecord.dagster_run_id.in_(list(run_ids)), QuoteRecord.symbol.in_(wanted))
            .order_by(QuoteRecord.quoted_at, QuoteRecord.id)
        ).all()
        return [(row.dagster_run_id or "", Quote(row.symbol, row.bid, row.ask, row.quoted_at)) for row in rows]


def latest_quotes(db: Database, symbols: Iterable[str]) -> dict[str, Quote]:
    """The most recent stored quote per symbol (what `status` marks open positions at, without a broker call)."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    with db.transaction() as session:
        newest = (
            sa.select(QuoteRecord.symbol, sa.func.max(QuoteRecord.id).label("id"))
            .where(QuoteRecord.symbol.in_(wanted))
            .group_by(QuoteRecord.symbol)
            .subquery()
        )
        rows = session.scalars(sa.select(QuoteRecord).join(newest, QuoteRecord.id == newest.c.id)).all()
        return {row.symbol: Quote(row.symbol, row.bid, row.ask, row.quoted_at) for row in rows}


def start_decision_run(db: Database, *, kind: str, run_id: str | None, strategy: str | None = None) -> uuid.UUID:
    with db.transaction() as session:
        row = DecisionRun(kind=kind, dagster_run_id=run_id, strategy=strategy, execution_meta={})
        session.add(row)
        session.flush()
        return row.id


def finish_decision_run(db: Database, decision_run_id: uuid.UUID, execution_meta: Any) -> None:
    """Record the run's metadata; SafeJSON passes it through to_jsonable (UUIDs, Decimals, SDK models)."""
    with db.transaction() as session:
        session.execute(
            sa.update(DecisionRun)
            .where(DecisionRun.id == decision_run_id)
            .values(finished_at=utc_now(), execution_meta=execution_meta)
        )


def decision_runs_since(db: Database, *, kind: str, since: datetime) -> int:
    with db.transaction() as session:
        return (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(DecisionRun)
                .where(DecisionRun.kind == kind, DecisionRun.started_at >= since)
            )
            or 0
        )


def get_decision_run_meta(db: Database, decision_run_id: uuid.UUID) -> Any:
    with db.transaction() as session:
        return session.scalar(sa.select(DecisionRun.execution_meta).where(DecisionRun.id == decision_run_id))
