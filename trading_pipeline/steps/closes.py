"""The stop-loss sweep: the commit-early close protocol of DESIGN.md.

0. resolve leftover `closing` rows (a crashed run) by looking their order up at the broker
1. read open trades — COMMIT (no transaction stays open)
2. one multi-symbol quote request per chunk of unique symbols — no connection checked out
3. decide exits (pure domain.exits); unusable quotes are flagged, never acted on, never dropped
4. read the broker's book once for the symbols to close (steps/broker_book.py), then per exit: claim
   open → closing (own transaction) → free the shares → submit with the deterministic client_order_id (no
   connection checked out) → record the fill (own transaction) — steps/close_orders.py. Symbols are closed
   at once by up to `CLOSE_CONCURRENCY` workers (each symbol's trades in turn, since each close is sized
   against what the earlier ones left), so 100 closes cost a few round trips of wall time, not 100 × 2.
5. the fills of all the run's closes, looked up in one listing of the run's orders (steps/close_fills.py),
   then recorded, each in its own short transaction
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading_pipeline.broker.base import Broker
from trading_pipeline.domain.calendar import NEW_YORK, trading_days_between
from trading_pipeline.domain.drift import split_like_ratio
from trading_pipeline.domain.exits import ExitDecision, InvalidQuote, decide_exit, next_high_water_mark
from trading_pipeline.domain.refusals import RETRY_LASTING_REFUSAL_AFTER
from trading_pipeline.domain.types import Quote
from trading_pipeline.steps.broker_book import BrokerBook
from trading_pipeline.steps.close_fills import AwaitingFill, record_fills
from trading_pipeline.steps.close_orders import close_position
from trading_pipeline.steps.leftovers import LEFTOVER_GRACE, resolve_leftover_closes
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import refusals_repository as refusals_repo
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

__all__ = ["CLOSE_CONCURRENCY", "LEFTOVER_GRACE", "SweepResult", "run_stop_loss_sweep"]

# Symbols closed at once. Each worker is one HTTP connection (alpaca-py's session pools 10) and at most one
# short DB transaction at a time (the engine's pool holds 5 + 5 overflow); Alpaca's 200 requests/minute is
# the budget they share.
CLOSE_CONCURRENCY = 8


def run_stop_loss_sweep(
    db: Database,
    broker: Broker,
    *,
    run_id: str | None,
    now: datetime | None = None,
    max_quote_age: timedelta | None = None,
    leftover_grace: timedelta = LEFTOVER_GRACE,
    prefetched: Mapping[str, Quote] | None = None,
    max_age_trading_days: int | None = None,
    close_concurrency: int = CLOSE_CONCURRENCY,
    market_open: bool = True,
    next_open: datetime | None = None,
) -> SweepResult:
    """One sweep. `prefetched`: quotes this run already fetched (the `quotes` asset); only symbols not in
    it are requested, so a stop-loss run asks the broker for each symbol once. `max_age_trading_days`:
    close positions held that many NYSE sessions (None: no age limit); a trade's own limit (set by its
    strategy) applies too, whichever is smaller. `close_concurrency`: symbols closed at once (1: one after
    another, in symbol order — what a seeded soak needs to replay the same requests). `market_open`: the
    broker's clock; when closed, exits are decided and reported (until `next_open`) but no order is sent —
    Alpaca would queue a market DAY order to the next session without a word."""
    result = SweepResult()
    resolve_leftover_closes(db, broker, result, now=now, grace=leftover_grace)

    trades = trades_repo.open_trades(db)  # read + commit
    result.positions_checked = len(trades)
    symbols = sorted({t.symbol for t in trades})
    result.unique_symbols = len(symbols)
    if not trades:
        return result

    wanted = set(symbols)
    quotes: dict[str, Quote] = {s: q for s, q in (prefetched or {}).items() if s in wanted}
    to_fetch = [s for s in symbols if s not in quotes]
    if to_fetch:
        batch = broker.latest_quotes(to_fetch)  # no DB connection held
        result.quote_requests = batch.requests
        result.missing_quotes = sorted(batch.missing | set(batch.rejected))
        runs_repo.save_quotes(db, batch.quotes.values(), run_id=run_id)
        quotes.update(batch.quotes)
    decision_time = now or datetime.now(UTC)

    exits: list[tuple[trades_repo.TradeRecord, ExitDecision]] = []
    marks: dict[uuid.UUID, Decimal] = {}
    for trade in trades:
        quote = quotes.get(trade.symbol)
        if quote is None:
            continue
        max_age = _tighter(trade.max_age_trading_days, max_age_trading_days)
        try:
            decision = decide_exit(
                trade.position_view(),
                quote,
                now=decision_time,
                max_quote_age=max_quote_age,
                trading_days_held=_sessions_held(trade, decision_time) if max_age else None,
                max_age_trading_days=max_age,
            )
        except InvalidQuote as exc:
            result.unusable_quotes[trade.symbol] = exc.problem
            continue
        if trade.trailing_pct is not None:
            mark = next_high_water_mark(trade.position_view(), quote)
            if mark != trade.high_water_mark:
                marks[trade.id] = mark
        if decision is not None:
            exits.append((trade, decision))
    result.high_water_marks_raised = trades_repo.update_high_water_marks(db, marks)
    result.exits_decided = len(exits)

    if not exits:
        return result
    if not market_open:
        when = f"{next_open.astimezone(NEW_YORK):%a %Y-%m-%d %H:%M} ET" if next_open else "the next open"
        for trade, decision in exits:
            result.waiting_for_open[trade.symbol] = (
                f"{decision.reason.value} (trigger {decision.trigger_price}): the market is closed (broker clock), "
                f"no market order queued; sold by the first stop-loss run after the open, {when}"
            )
        return result
    exits = _hold_back_refused(db, exits, result, decision_time)
    if not exits:
        return result
    # What the broker holds and which orders hold it, read once for the symbols to close: a close never sells
    # more than is held (that would open a short), and is never blocked by the listing being down.
    book = BrokerBook.read(broker, {trade.symbol for trade, _ in exits})
    result.book_problems = dict(book.problems)
    result.split_suspects = split_suspects(trades, book, {trade.symbol for trade, _ in exits})
    by_symbol: dict[str, list[tuple[trades_repo.TradeRecord, ExitDecision]]] = {}
    for trade, decision in exits:
        if trade.symbol in result.split_suspects:
            continue  # never sell on a split: the price did not move, the share count did
        by_symbol.setdefault(trade.symbol, []).append((trade, decision))
    started = time.perf_counter()

    def close_symbol(group: list[tuple[trades_repo.TradeRecord, ExitDecision]]) -> tuple[SweepResult, Exception | None]:
        part = SweepResult()
        try:
            for trade, decision in group:
                close_position(db, broker, trade, decision, run_id=run_id, result=part, now=decision_time, book=book)
        except Exception as exc:  # e.g. the DB died mid-claim: the other symbols go on; raised after the rest
            return part, exc
        return part, None

    groups = [by_symbol[symbol] for symbol in sorted(by_symbol)]
    workers = max(1, min(close_concurrency, len(groups)))
    result.close_workers = workers
    if workers == 1:
        outcomes = [close_symbol(group) for group in groups]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="close") as pool:
            outcomes = list(pool.map(close_symbol, groups))
    for part, _ in outcomes:
        result.absorb(part)
    if groups:
        result.last_close_submitted_s = round(time.perf_counter() - started, 3)
    awaiting = [AwaitingFill(trade, order, reason) for trade, order, reason in result.awaiting_fill]
    result.awaiting_fill = []
    errors = [error for _, error in outcomes if error is not None]
    record_refusals(db, result, now=decision_time, run_id=run_id)
    result.refusals_cleared = refusals_repo.clear_refusals(db, {a.trade.symbol for a in awaiting})
    if awaiting:  # what was sent is recorded even when another symbol's close failed
        errors += record_fills(db, broker, awaiting, result=result, run_id=run_id, since=decision_time)
    if errors:
        raise errors[0]  # the run fails loudly; the rest of its closes are sent and recorded
    return result


def _hold_back_refused(
    db: Database,
    exits: list[tuple[trades_repo.TradeRecord, ExitDecision]],
    result: SweepResult,
    now: datetime,
) -> list[tuple[trades_repo.TradeRecord, ExitDecision]]:
    """Exits refused for a lasting reason are sent again only once their `retry_after` has passed: the same
    refused order every few seconds helps nobody, and the position stays reported beyond its stop."""
    stored = refusals_repo.refusals(db, {trade.symbol for trade, _ in exits})
    kept = []
    for trade, decision in exits:
        refusal = stored.get(trade.symbol)
        if refusal is not None and refusal.retry_after > now:
            result.refused[trade.symbol] = (
                f"{refusal.cause} — the broker said \"{refusal.message}\" ({refusal.attempts}× since "
                f"{refusal.first_refused_at:%Y-%m-%d %H:%M} UTC); next attempt after "
                f"{refusal.retry_after:%H:%M:%S} UTC"
            )
            continue
        kept.append((trade, decision))
    return kept


def record_refusals(db: Database, result: SweepResult, *, now: datetime, run_id: str | None) -> None:
    """Store each lasting refusal with when to try again; the first of an episode is alerted by the caller."""
    for trade, rejected, refusal in result.refusals_to_record:
        stored = refusals_repo.record_refusal(
            db,
            symbol=trade.symbol,
            trade_id=trade.id,
            now=now,
            retry_after=now + RETRY_LASTING_REFUSAL_AFTER,
            status=rejected.status,
            code=rejected.code,
            cause=refusal.cause,
            message=rejected.message,
            run_id=run_id,
        )
        text = (
            f"{refusal.cause} — the broker said \"{rejected.message}\" (HTTP {rejected.status}, code "
            f"{rejected.code}); tried again after {stored.retry_after:%H:%M:%S} UTC. What to do: {refusal.what_to_do}"
        )
        result.refused[trade.symbol] = text
        if stored.attempts == 1:
            result.new_refusals[trade.symbol] = text
    result.refusals_to_record = []


def _tighter(own: int | None, configured: int | None) -> int | None:
    """The strategy's age limit for this trade or the configured one, whichever closes it sooner."""
    limits = [age for age in (own, configured) if age is not None]
    return min(limits) if limits else None


def split_suspects(trades: list[trades_repo.TradeRecord], book: BrokerBook, symbols: set[str]) -> dict[str, str]:
    """Symbols whose broker quantity moved by a split-like ratio with the cost basis unchanged. A price that
    crossed a stop there is a split not yet re-based (its corporate action unknown so far), not a gap: the
    sweep sends nothing and says so. When the broker's quantity did not change, it is a real gap and sells."""
    suspects = {}
    for symbol in sorted(symbols):
        position = book.positions.get(symbol)
        mine = [t for t in trades if t.symbol == symbol]
        if position is None or not mine:
            continue
        qty = sum((t.qty for t in mine), Decimal(0))
        basis = sum((t.qty * t.entry_price for t in mine), Decimal(0)) / qty
        ratio = split_like_ratio(qty, basis, position.qty, position.avg_entry_price)
        if ratio is not None:
            suspects[symbol] = (
                f"broker holds {position.qty} at {position.avg_entry_price} for our {qty} at {basis:.2f} "
                f"(× {ratio}, cost basis unchanged): a split not re-based yet — not sold on it"
            )
    return suspects


def _sessions_held(trade: trades_repo.TradeRecord, now: datetime) -> int:
    return trading_days_between(trade.entry_at.astimezone(NEW_YORK).date(), now.astimezone(NEW_YORK).date())
