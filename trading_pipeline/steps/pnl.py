"""Today's P&L from the trading store alone (no broker call): realized from closes, unrealized at the last
stored quotes. Shared by `status` and the daily-loss guard, so both judge the same number."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from trading_pipeline.domain.performance import position_pnl
from trading_pipeline.domain.types import Quote
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class PnL:
    realized: Decimal
    unrealized: Decimal
    marked_at: datetime | None
    unmarked: list[str] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return self.realized + self.unrealized


def pnl_since(db: Database, start: datetime, known: Mapping[str, Quote] | None = None) -> PnL:
    """Realized P&L of trades closed since `start` plus open trades marked at their latest quote.

    `known`: quotes already in hand (a stop-loss run's own); only symbols they lack are looked up among the
    stored quotes, so a run's cost does not grow with the day's quote history."""
    realized = sum(
        (
            position_pnl(t.side, t.qty, t.entry_price, t.close_price)
            for t in trades_repo.closed_trades_since(db, start)
            if t.close_price is not None
        ),
        Decimal(0),
    )
    open_trades = trades_repo.open_trades(db, reuse=True)  # a stop-loss run's: the sweep's read when it closed none
    held = {t.symbol for t in open_trades}
    given = {symbol: quote for symbol, quote in (known or {}).items() if symbol in held}
    marks = {**runs_repo.latest_quotes(db, held - set(given)), **given}
    unrealized = Decimal(0)
    unmarked: list[str] = []
    for trade in open_trades:
        quote = marks.get(trade.symbol)
        if quote is None:
            unmarked.append(trade.symbol)
            continue
        unrealized += position_pnl(trade.side, trade.qty, trade.entry_price, quote.mid)
    return PnL(
        realized.quantize(CENT),
        unrealized.quantize(CENT),
        max((q.timestamp for q in marks.values()), default=None),
        unmarked,
    )
