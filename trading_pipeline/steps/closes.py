"""The stop-loss sweep: the commit-early close protocol of DESIGN.md.

0. resolve leftover `closing` rows (a crashed run) by looking their order up at the broker
1. read open trades — COMMIT (no transaction stays open)
2. one multi-symbol quote request per chunk of unique symbols — no connection checked out
3. decide exits (pure domain.exits); unusable quotes are flagged, never acted on, never dropped
4. per exit: claim open → closing (own transaction) → submit with the deterministic
   client_order_id (no connection checked out) → record the fill (own transaction)
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading_pipeline.broker.base import Broker, BrokerError, BrokerOrder, OrderRejected, OrderRequest
from trading_pipeline.domain.calendar import NEW_YORK, trading_days_between
from trading_pipeline.domain.exits import ExitDecision, InvalidQuote, decide_exit, next_high_water_mark
from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.types import ExitReason, OrderAction, Quote, closing_side, signed_qty
from trading_pipeline.steps.orders import is_dead, order_fields
from trading_pipeline.steps.protection import STOP_TYPES, cancel_protection
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

log = logging.getLogger(__name__)

# A `closing` row younger than this may belong to a run that is between its claim and its submit;
# only older rows whose order the broker does not know are released for a retry.
LEFTOVER_GRACE = timedelta(seconds=75)  # > one submit's timeouts and retries, < the 2-minute schedule


@dataclass
class SweepResult:
    positions_checked: int = 0
    unique_symbols: int = 0
    quote_requests: int = 0
    missing_quotes: list[str] = field(default_factory=list)
    unusable_quotes: dict[str, str] = field(default_factory=dict)
    exits_decided: int = 0
    claimed: int = 0
    claim_lost: int = 0
    orders_submitted: int = 0
    closed: int = 0
    pending_fill: int = 0
    closes_by_reason: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    leftovers_found: int = 0
    leftovers_closed: int = 0
    leftovers_released: int = 0
    high_water_marks_raised: int = 0
    closed_trades: list[dict[str, object]] = field(default_factory=list)

    @property
    def flagged_positions(self) -> dict[str, str]:
        """Positions that could not be judged this run: no quote, or a quote that must not be used."""
        flagged = {symbol: "no quote returned by the broker" for symbol in self.missing_quotes}
        flagged.update(self.unusable_quotes)
        return flagged


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
) -> SweepResult:
    """One sweep. `prefetched`: quotes this run already fetched (the `quotes` asset); only symbols not in
    it are requested, so a stop-loss run asks the broker for each symbol once. `max_age_trading_days`:
    close positions held that many NYSE sessions (None: no age limit)."""
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
        try:
            decision = decide_exit(
                trade.position_view(),
                quote,
                now=decision_time,
                max_quote_age=max_quote_age,
                trading_days_held=_sessions_held(trade, decision_time) if max_age_trading_days else None,
                max_age_trading_days=max_age_trading_days,
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

    # What the broker holds, once: never send a closing order for shares it does not hold (that opens a short).
    held = _held_or_none(broker, result) if exits else {}
    for trade, decision in exits:
        close_position(db, broker, trade, decision, run_id=run_id, result=result, now=decision_time, held=held)
    return result


def close_position(
    db: Database,
    broker: Broker,
    trade: trades_repo.TradeRecord,
    decision: ExitDecision,
    *,
    run_id: str | None,
    result: SweepResult,
    now: datetime,
    held: dict[str, Decimal] | None = None,
) -> None:
    """Claim (tx) → submit (no tx) → record (tx) for one trade."""
    wanted = signed_qty(trade.qty, trade.side)
    if held is not None and not _holds(held.get(trade.symbol, Decimal(0)), wanted):
        result.failures[trade.symbol] = (
            f"broker holds {held.get(trade.symbol, 0)} {trade.symbol}, the trade needs {wanted}: no order sent "
            "(closed outside this run?) — reconciliation and protection record what happened"
        )
        return
    cid = client_order_id(trade.id, OrderAction.CLOSE, trade.close_attempts)
    won = claims_repo.claim_for_close(
        db,
        trade.id,
        client_order_id=cid,
        reason=decision.reason,
        trigger_price=decision.trigger_price,
        run_id=run_id,
        now=now,
    )
    if not won:
        result.claim_lost += 1  # an overlapping run owns this close
        return
    result.claimed += 1
    if trade.protected and _closed_by_its_legs(db, broker, trade, cid, result):
        return
    request = OrderRequest(symbol=trade.symbol, side=closing_side(trade.side), qty=trade.qty, client_order_id=cid)
    try:
        order = broker.submit_order(request)
    except OrderRejected as exc:
        # The broker provably holds no order for this id: release so the next run retries (attempt + 1).
        claims_repo.release_claim(db, trade.id, client_order_id=cid)
        result.failures[trade.symbol] = f"close rejected by broker: {exc.message}"
        return
    except BrokerError as exc:
        # Ambiguous (timeouts, 5xx after retries): the row stays `closing`; the next run looks the id up.
        result.failures[trade.symbol] = f"close submit unresolved, will reconcile by client_order_id: {exc}"
        return
    result.orders_submitted += 1
    if held is not None:
        held[trade.symbol] = held.get(trade.symbol, Decimal(0)) - wanted
    record_close_order(db, trade, order, result=result, reason=decision.reason)


def _sessions_held(trade: trades_repo.TradeRecord, now: datetime) -> int:
    return trading_days_between(trade.entry_at.astimezone(NEW_YORK).date(), now.astimezone(NEW_YORK).date())


def _held_or_none(broker: Broker, result: SweepResult) -> dict[str, Decimal] | None:
    """The held-shares guard needs one positions call; if the broker cannot answer it, closing without the
    guard beats blocking every stop-loss of the run (the reliability suite's 40% fault day)."""
    try:
        return held_quantities(broker)
    except BrokerError as exc:
        result.failures["(positions)"] = f"broker positions unavailable, closing without the held-shares guard: {exc}"
        return None


def held_quantities(broker: Broker) -> dict[str, Decimal]:
    return {p.symbol: signed_qty(p.qty, p.side) for p in broker.positions()}


def _holds(have: Decimal, want: Decimal) -> bool:
    return have >= want > 0 or have <= want < 0


def _closed_by_its_legs(
    db: Database, broker: Broker, trade: trades_repo.TradeRecord, cid: str, result: SweepResult
) -> bool:
    """Cancel a protected trade's legs before selling (Alpaca refuses shares held for open orders). If a leg
    filled meanwhile, the broker already closed the position: record that close and send nothing."""
    try:
        filled = cancel_protection(broker, trade.symbol)
    except BrokerError as exc:
        claims_repo.release_claim(db, trade.id, client_order_id=cid)
        result.failures[trade.symbol] = f"could not cancel protective legs before closing: {exc}"
        return True
    if not filled:
        return False
    leg = filled[0]
    reason = ExitReason.BROKER_STOP if leg.type in STOP_TYPES else ExitReason.TAKE_PROFIT
    orders_repo.upsert_order(db, order_fields(leg, trade.id))
    if claims_repo.record_close(
        db,
        trade.id,
        client_order_id=cid,
        close_price=leg.filled_avg_price,
        closed_at=leg.filled_at or datetime.now(UTC),
        reason=reason,
    ):
        result.closed += 1
        result.closes_by_reason[reason.value] += 1
    return True


def record_close_order(
    db: Database,
    trade: trades_repo.TradeRecord,
    order: BrokerOrder,
    *,
    result: SweepResult,
    reason: ExitReason | None,
) -> None:
    orders_repo.upsert_order(db, order_fields(order, trade.id))
    if order.is_filled:
        closed = claims_repo.record_close(
            db,
            trade.id,
            client_order_id=order.client_order_id,
            close_price=order.filled_avg_price,
            closed_at=order.filled_at or datetime.now(UTC),
        )
        if closed:
            result.closed += 1
            final_reason = reason or trade.close_reason
            result.closes_by_reason[final_reason.value if final_reason else "unknown"] += 1
            result.closed_trades.append(
                {
                    "symbol": trade.symbol,
                    "reason": final_reason,
                    "qty": trade.qty,
                    "entry": trade.entry_price,
                    "exit": order.filled_avg_price,
                    "client_order_id": order.client_order_id,
                }
            )
    else:
        result.pending_fill += 1  # accepted, not yet filled (e.g. market closed): resolved next run


def resolve_leftover_closes(
    db: Database, broker: Broker, result: SweepResult, *, now: datetime | None, grace: timedelta
) -> None:
    """Finish what a crashed or overlapping run left `closing`, by client_order_id at the broker."""
    leftovers = trades_repo.closing_trades(db)
    result.leftovers_found = len(leftovers)
    current = now or datetime.now(UTC)
    for trade in leftovers:
        cid = trade.close_client_order_id
        if cid is None:  # cannot happen through claim_for_close; flag it rather than guess
            result.failures[trade.symbol] = "closing row without client_order_id"
            continue
        try:
            order = broker.order_by_client_order_id(cid)
        except BrokerError as exc:
            result.failures[trade.symbol] = f"leftover close lookup failed: {exc}"
            continue
        young = trade.closing_started_at is not None and current - trade.closing_started_at < grace
        if order is None or is_dead(order):
            if young:
                continue  # maybe another run is about to submit it; look again next run
            if order is not None:
                orders_repo.upsert_order(db, order_fields(order, trade.id))
            if claims_repo.release_claim(db, trade.id, client_order_id=cid):
                result.leftovers_released += 1
            continue
        before = result.closed
        record_close_order(db, trade, order, result=result, reason=None)
        result.leftovers_closed += result.closed - before
