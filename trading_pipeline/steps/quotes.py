"""Latest quotes for open positions ∪ today's candidates: deduplicated, chunked by the adapter, stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from trading_pipeline.broker.base import Broker
from trading_pipeline.domain.exits import InvalidQuote, validate_quote
from trading_pipeline.domain.types import Quote
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database


@dataclass
class QuotesResult:
    symbols_requested: int
    open_position_symbols: int
    candidate_symbols: int
    requests: int
    quotes: dict[str, Quote]
    missing: list[str]
    unusable: dict[str, str] = field(default_factory=dict)
    oldest_quote_age_seconds: float | None = None
    held: list[str] = field(default_factory=list)


def fetch_quotes(
    db: Database, broker: Broker, *, trading_date: date | None, run_id: str | None, now: datetime | None = None
) -> QuotesResult:
    held = {t.symbol for t in trades_repo.open_trades(db)}
    snapshot = runs_repo.get_universe_snapshot(db, trading_date) if trading_date else None
    candidates = set(snapshot.symbols) if snapshot else set()
    symbols = sorted(held | candidates)
    if not symbols:
        return QuotesResult(0, 0, 0, 0, {}, [])
    batch = broker.latest_quotes(symbols)
    runs_repo.save_quotes(db, batch.quotes.values(), run_id=run_id)
    unusable: dict[str, str] = {}
    for symbol, quote in batch.quotes.items():
        try:
            validate_quote(quote)
        except InvalidQuote as exc:
            unusable[symbol] = exc.problem
    current = now or datetime.now(UTC)
    ages = [(current - q.timestamp).total_seconds() for q in batch.quotes.values()]
    return QuotesResult(
        symbols_requested=len(symbols),
        open_position_symbols=len(held),
        candidate_symbols=len(candidates),
        requests=batch.requests,
        quotes=dict(batch.quotes),
        missing=sorted(batch.missing | set(batch.rejected)),
        unusable=unusable,
        oldest_quote_age_seconds=max(ages) if ages else None,
        held=sorted(held),
    )
