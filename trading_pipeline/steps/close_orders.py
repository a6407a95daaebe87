"""One close, sized against the broker's book: claim (tx) → free the quantity → submit (no tx) → record (tx).

- The order sells the lesser of the trade's quantity and what the broker holds for the symbol (after earlier
  closes in the same symbol this run), never more and never a short. When the broker's positions cannot be
  read (listing and per-symbol look-up both down), the close still goes out, sized to the trade's quantity in
  the DB — which every successful read has cut to what the broker held — relying on Alpaca to refuse a sell of
  more than is held (403; "an order that would flip your position ... from long to short ... will return a
  403 Forbidden", alpaca-docs content/api-references/trading-api/_index.md). A read endpoint never blocks a stop.
- Open orders that hold the shares — the trade's own legs, found in the listing or by their parent, or anyone
  else's — are cancelled and confirmed first; a refusal for quantity (403 "insufficient qty available") frees
  what holds it, or re-reads the position (else takes the refusal's own `existing_qty`), re-sizes the trade to it
  and tries once more in the same run.
- A refusal that will not change within minutes (pattern-day-trading protection, an asset not tradable, an
  account blocked) is stored with when to try again (`domain/refusals.py`), so it is re-sent at a bounded
  cadence, and reported with what a person can do.
- A close order that ends partly filled splits the trade: the filled part is closed, the rest is open again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from trading_pipeline.broker.base import (
    Broker,
    BrokerError,
    BrokerOrder,
    BrokerPosition,
    OrderRejected,
    OrderRequest,
)
from trading_pipeline.domain.exits import ExitDecision
from trading_pipeline.domain.ids import client_order_id
from trading_pipeline.domain.refusals import Refusal, RefusalKind, classify_refusal
from trading_pipeline.domain.types import ExitReason, OrderAction, closing_side, signed_qty
from trading_pipeline.steps.broker_book import BrokerBook
from trading_pipeline.steps.holding_orders import describe_order, free_quantity
from trading_pipeline.steps.orders import order_fields
from trading_pipeline.steps.protection import STOP_TYPES, protection_orders
from trading_pipeline.steps.reconcile import shares
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import claims_repository as claims_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database


class _Resize:
    """The broker refused the close for quantity and no open order was found holding the shares: it holds
    `held` (its fresh position, or the refusal's `existing_qty`)."""

    def __init__(self, held: Decimal) -> None:
        self.held = held


def close_position(
    db: Database,
    broker: Broker,
    trade: trades_repo.TradeRecord,
    decision: ExitDecision,
    *,
    run_id: str | None,
    result: SweepResult,
    now: datetime,
    book: BrokerBook,
    resized: bool = False,
) -> None:
    symbol, side = trade.symbol, closing_side(trade.side)
    if any(refused.symbol == symbol for refused, _, _ in result.refusals_to_record):
        # The broker just refused this symbol's exit for a reason that lasts: the symbol's other trades wait for
        # the same cadence rather than asking again in the same breath.
        result.failures[symbol] = f"{symbol}'s exit was just refused for a lasting reason: retried at its cadence"
        return
    held = book.held(symbol)
    wanted = signed_qty(trade.qty, trade.side)
    if held is None:
        why = book.unknown.get(symbol) or "the broker's positions could not be read"
        result.blind_closes[symbol] = (
            f"{why}: close sent for the DB's {shares(trade.qty)} (bounded by the last successful read); the "
            "broker refuses a sell of more than is held"
        )
        available = trade.qty
    else:
        available = abs(held) if (held > 0) == (wanted > 0) else Decimal(0)
    if available <= 0:
        result.failures[symbol] = (
            f"broker holds {shares(held)} {symbol}, the trade needs {shares(wanted)}: no order sent — the "
            "reconciliation reports the position as unconfirmed until a fill or a corporate action explains it"
        )
        return
    if available < trade.qty:
        reason = f"broker holds {shares(available)} {symbol}, the trade had {shares(trade.qty)}: closing what is held"
        if adjustments_repo.reduce_to_held(db, trade.id, qty=available, reason=reason, run_id=run_id):
            result.drift_repaired[symbol] = reason
        trade = trades_repo.get_trade(db, trade.id) or trade
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
    if not _free_the_shares(db, broker, trade, cid, book, result, listing_only=False):
        return
    request = OrderRequest(symbol=symbol, side=side, qty=trade.qty, client_order_id=cid)
    order = _submit(db, broker, trade, cid, request, book, result)
    if isinstance(order, _Resize):
        if resized or order.held <= 0 or order.held >= trade.qty:
            result.failures[symbol] = (
                f"close of {shares(trade.qty)} {symbol} refused for quantity; the broker holds "
                f"{shares(order.held)} and no open order was found holding them: retried next run"
            )
            return
        # Fewer shares held than the DB says, as the broker just said: the trade follows it, the close goes again.
        book.unknown.pop(symbol, None)
        book.positions[symbol] = _position_of(trade, order.held)
        fresh = trades_repo.get_trade(db, trade.id) or trade
        close_position(
            db, broker, fresh, decision, run_id=run_id, result=result, now=now, book=book, resized=True
        )
        return
    if order is None:
        return
    result.orders_submitted += 1
    book.take(symbol, trade.qty)
    # Recorded once the sweep has looked the fills of all its closes up in one listing (steps/close_fills.py).
    result.awaiting_fill.append((trade, order, decision.reason))


def _position_of(trade: trades_repo.TradeRecord, held: Decimal) -> BrokerPosition:
    return BrokerPosition(trade.symbol, trade.side, held, trade.entry_price, trade.entry_price, held)


def _submit(
    db: Database,
    broker: Broker,
    trade: trades_repo.TradeRecord,
    cid: str,
    request: OrderRequest,
    book: BrokerBook,
    result: SweepResult,
) -> BrokerOrder | _Resize | None:
    for attempt in (1, 2):
        try:
            return broker.submit_order(request, confirm_fill=False)
        except OrderRejected as exc:
            refusal = classify_refusal(exc.status, exc.code, exc.message, exc.details)
            if attempt == 1 and refusal.kind is RefusalKind.QUANTITY:
                # Something the listing did not show holds the shares, or fewer are held than the DB says.
                freed = _free_unlisted_holders(db, broker, trade, cid, book, result, exc)
                if freed is True:
                    continue
                if freed is None:
                    return None
                available = _available_after_refusal(broker, book, trade, refusal)
                claims_repo.release_claim(db, trade.id, client_order_id=cid)
                if available is None:
                    result.failures[trade.symbol] = (
                        f"close refused ({exc.message}); what the broker holds is unreadable: retried next run"
                    )
                    return None
                return _Resize(available)
            # The broker provably holds no order for this id: release so the next run retries (attempt + 1).
            claims_repo.release_claim(db, trade.id, client_order_id=cid)
            result.failures[trade.symbol] = f"close rejected by broker: {exc.message}"
            if refusal.kind is RefusalKind.LASTING:
                result.refusals_to_record.append((trade, exc, refusal))
            return None
        except BrokerError as exc:
            # Ambiguous (timeouts, 5xx after retries): the row stays `closing`; the next run looks the id up,
            # and until then the position counts as beyond its stop (no live order) — the run fails and alerts.
            result.failures[trade.symbol] = f"close submit unresolved, will reconcile by client_order_id: {exc}"
            return None
    return None


def _free_unlisted_holders(
    db: Database,
    broker: Broker,
    trade: trades_repo.TradeRecord,
    cid: str,
    book: BrokerBook,
    result: SweepResult,
    refused: OrderRejected,
) -> bool | None:
    """Look for open orders holding the shares that the run's listing did not show, and free them.
    True: some were freed, send again. False: none found. None: the claim was settled or released here."""
    try:
        book.orders = book.orders or {}
        before = {o.id for o in book.orders.get(trade.symbol, [])}
        for order in broker.open_orders([trade.symbol]):
            if order.id not in before:
                book.add_order(order)
    except BrokerError as lookup:
        result.failures[trade.symbol] = f"close refused ({refused.message}); open orders unreadable: {lookup}"
        claims_repo.release_claim(db, trade.id, client_order_id=cid)
        return None
    if not book.holding_orders(trade.symbol, closing_side(trade.side)):
        return False
    return True if _free_the_shares(db, broker, trade, cid, book, result, listing_only=True) else None


def _available_after_refusal(
    broker: Broker, book: BrokerBook, trade: trades_repo.TradeRecord, refusal: Refusal
) -> Decimal | None:
    """What the broker holds for the trade's side after a quantity refusal: a fresh read of the position, else
    the refusal's own `existing_qty` (Alpaca sends it in the 403's body), else unknown."""
    book.refresh(trade.symbol)
    held = book.held(trade.symbol)
    if held is not None:
        wanted = signed_qty(trade.qty, trade.side)
        return abs(held) if held != 0 and (held > 0) == (wanted > 0) else Decimal(0)
    return refusal.held


def _free_the_shares(
    db: Database,
    broker: Broker,
    trade: trades_repo.TradeRecord,
    cid: str,
    book: BrokerBook,
    result: SweepResult,
    *,
    listing_only: bool,
) -> bool:
    """Cancel what holds the trade's shares and confirm it. True: go on and submit the close. False: the claim
    was settled here (a leg filled: recorded) or released (a cancel not yet confirmed: the next run closes)."""
    side = closing_side(trade.side)
    holders = list(book.holding_orders(trade.symbol, side) or [])
    if trade.protected and not listing_only:
        # After a bracket's parent fills, Alpaca keeps the stop leg `held` and a status=open listing need not
        # show it: the legs are looked up by their parent.
        try:
            legs = protection_orders(broker, trade)
        except BrokerError as exc:
            claims_repo.release_claim(db, trade.id, client_order_id=cid)
            result.failures[trade.symbol] = f"could not look up the protective legs before closing: {exc}"
            return False
        known = {o.id for o in holders}
        for leg in legs:
            if leg.id not in known and leg.is_open and leg.remaining_qty > 0 and leg.side is side:
                holders.append(leg)
                book.ours.add(leg.id)
    if not holders:
        return True
    freed = free_quantity(broker, holders)
    for order in [*freed.cancelled, *freed.unconfirmed, *freed.filled]:
        if not book.is_ours(order):
            result.outside_orders_cancelled.append(describe_order(order))
    result.holding_orders_cancelled += len(freed.cancelled)
    ours_filled = [o for o in freed.filled if book.is_ours(o)]
    if ours_filled and _record_leg_close(db, trade, cid, ours_filled[0], result):
        return False
    if freed.filled:  # shares were sold before a cancel took (an outside order, or a leg in part)
        book.refresh(trade.symbol)
        claims_repo.release_claim(db, trade.id, client_order_id=cid)
        whose = "the trade's own leg" if ours_filled else "an order placed outside the pipeline"
        result.failures[trade.symbol] = (
            f"{whose} filled while being cancelled ({describe_order(freed.filled[0])}): the close is re-sized "
            "against the broker next run"
        )
        return False
    if not freed.free:
        claims_repo.release_claim(db, trade.id, client_order_id=cid)
        pending = "; ".join([*map(describe_order, freed.unconfirmed), *freed.failures])
        result.failures[trade.symbol] = f"waiting for the broker to confirm cancels ({pending}): closed next run"
        return False
    return True


def _record_leg_close(
    db: Database, trade: trades_repo.TradeRecord, cid: str, leg: BrokerOrder, result: SweepResult
) -> bool:
    """A protective leg filled while being cancelled: the broker already closed the position. Record that close
    and send nothing. Returns True when the close was recorded (False: the leg filled only in part)."""
    if leg.filled_qty < trade.qty:
        return False
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
    run_id: str | None = None,
) -> None:
    orders_repo.upsert_order(db, order_fields(order, trade.id))
    final_reason = reason or trade.close_reason
    if order.is_filled:
        closed = claims_repo.record_close(
            db,
            trade.id,
            client_order_id=order.client_order_id,
            close_price=order.filled_avg_price,
            closed_at=order.filled_at or datetime.now(UTC),
        )
        if closed:
            _count_close(result, trade.symbol, final_reason, trade.qty, trade.entry_price, order)
    elif order.is_terminal and order.filled_qty > 0 and order.filled_avg_price is not None:
        # Partly filled and done (cancelled, expired): the filled shares are closed, the rest is open again.
        part = adjustments_repo.split_partial_close(
            db,
            trade.id,
            client_order_id=order.client_order_id,
            filled_qty=order.filled_qty,
            close_price=order.filled_avg_price,
            closed_at=order.filled_at or datetime.now(UTC),
            run_id=run_id,
        )
        if part is not None:
            result.partial_closes += 1
            _count_close(result, trade.symbol, final_reason, part.qty, trade.entry_price, order)
    else:
        result.pending_fill += 1  # accepted or partly filled and still working: resolved next run


def _count_close(
    result: SweepResult,
    symbol: str,
    reason: ExitReason | None,
    qty: Decimal,
    entry: Decimal,
    order: BrokerOrder,
) -> None:
    result.closed += 1
    result.closes_by_reason[reason.value if reason else "unknown"] += 1
    result.closed_trades.append(
        {
            "symbol": symbol,
            "reason": reason,
            "qty": qty,
            "entry": entry,
            "exit": order.filled_avg_price,
            "client_order_id": order.client_order_id,
        }
    )
