"""Prototypes of the store changes the sweep bench recommends, applied only inside the bench.

Measured at 10,000 open positions / 2,000 symbols (see RESULTS.md), the sweep's longest transaction is
`repository.open_trades`: one transaction that loads 10,000 ORM `Trade` objects (identity map, attribute
instrumentation, Money/UtcDateTime conversion of every value) before it commits — 330–450 ms. The next
longest is `repository.save_quotes`: 2,000 quote rows in one INSERT transaction, 26–110 ms.

The prototypes:
- `open_trades_paged`: a Core select of exactly TradeRecord's columns (no ORM objects), keyset-paginated
  on (entry_at, id), one short transaction per page of `PAGE` rows. Each page is its own snapshot; that is
  safe here because a close is claimed by the conditional UPDATE (a trade closed by another run between
  pages loses its claim, and nothing is read twice because the keyset only moves forward).
- `save_quotes_chunked`: the same INSERT in transactions of `QUOTE_ROWS` rows.

- `gc.freeze()` before the sweep: with the store changes, the remaining long transactions (~90 ms, on
  either backend, landing in whichever transaction is open) are CPython's full (generation-2) garbage
  collections, which scan every object in the process — here the sim market and the imported libraries; in
  a Dagster run, Dagster's own. Freezing what exists when the run starts (a long-lived heap that never
  becomes garbage) leaves the collector only the sweep's own objects.

`prototype_repository()` swaps the two functions into `trading_pipeline.store.repository` for the duration
of a block (the sweep calls `repo.open_trades` / `repo.save_quotes` through the module) and freezes the
heap, then restores both.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from trading_pipeline.domain.types import Quote, TradeStatus
from trading_pipeline.store import repository
from trading_pipeline.store.database import Database
from trading_pipeline.store.models import QuoteRecord, Trade

PAGE = 1_000
QUOTE_ROWS = 500
_COLUMNS = [getattr(Trade, name) for name in repository.TradeRecord.__slots__]


def trades_with_status_paged(
    db: Database, status: TradeStatus, symbols: Iterable[str] | None = None, *, page: int = PAGE
) -> list[repository.TradeRecord]:
    records: list[repository.TradeRecord] = []
    after: tuple[Any, Any] | None = None
    wanted = None if symbols is None else sorted(set(symbols))
    while True:
        query = sa.select(*_COLUMNS).where(Trade.status == status).order_by(Trade.entry_at, Trade.id).limit(page)
        if wanted is not None:
            query = query.where(Trade.symbol.in_(wanted))
        if after is not None:
            query = query.where(sa.tuple_(Trade.entry_at, Trade.id) > sa.tuple_(*after))
        with db.transaction() as session:
            rows = session.execute(query).all()
        records.extend(repository.TradeRecord(*row) for row in rows)  # built after the commit
        if len(rows) < page:
            return records
        last = rows[-1]
        after = (
            sa.literal(last.entry_at, type_=Trade.entry_at.type),
            sa.literal(last.id, type_=Trade.id.type),
        )


def open_trades_paged(db: Database, symbols: Iterable[str] | None = None) -> list[repository.TradeRecord]:
    return trades_with_status_paged(db, TradeStatus.OPEN, symbols)


def save_quotes_chunked(db: Database, quotes: Iterable[Quote], *, run_id: str | None) -> int:
    rows = [
        {"symbol": q.symbol, "bid": q.bid, "ask": q.ask, "quoted_at": q.timestamp, "dagster_run_id": run_id}
        for q in quotes
    ]
    for start in range(0, len(rows), QUOTE_ROWS):
        with db.transaction() as session:
            session.execute(sa.insert(QuoteRecord), rows[start : start + QUOTE_ROWS])
    return len(rows)


@contextmanager
def prototype_repository(*, freeze_heap: bool = True) -> Iterator[None]:
    saved = repository.open_trades, repository.save_quotes
    repository.open_trades = open_trades_paged  # type: ignore[assignment]
    repository.save_quotes = save_quotes_chunked  # type: ignore[assignment]
    if freeze_heap:
        gc.collect()
        gc.freeze()
    try:
        yield
    finally:
        repository.open_trades, repository.save_quotes = saved
        if freeze_heap:
            gc.unfreeze()
