"""Open trades vs broker positions: pending entries resolved by client_order_id, divergences repaired.

The broker's book is the truth about what is held; the DB is the record of intent. Every divergence fails the
reconciliation check and alerts, and is repaired in the DB where the broker's book says unambiguously what
happened (each repair with an audit row, `store/adjustments_repository.py`):

- the broker holds fewer shares than our open trades: the trades are cut to what is held (oldest kept first);
- the broker holds none: nothing is written off without evidence. A closing fill at the broker (an order on
  the closing side after the entry) closes the trade as `manual` at its price; shares of the same quantity
  and cost basis under another symbol are the trade's after a name change not yet published (re-linked, with
  an audit row); a published name change re-points it (`steps/corporate_actions.py`, run for missing symbols
  by the positions step). Otherwise the trade stays open, *unconfirmed* — reported, alerted, and looked up
  again every run;
- most of the book missing at once (another account's keys, an empty listing during an incident) is one
  incident: nothing is written off or cut, entries are halted (the kill switch), and it is alerted;
- the broker holds more than our trades: reported (`steps/outside_positions.py` decides what follows);
- a quantity that moved by a split-like ratio with the cost basis unchanged: reported as a possible split and
  left alone (cutting the quantity without re-basing the price would silently switch protection off).

Pending entries: filled → open (protected by its bracket legs); partly filled → the rest is cancelled at once
and the trade opened at the filled quantity, so exactly what was bought is protected; cancelled, rejected or
expired → cancelled, with the broker's final status kept as the reason.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading_pipeline.broker.base import Broker, BrokerError, BrokerPosition
from trading_pipeline.domain.drift import is_mass_disappearance, split_like_ratio
from trading_pipeline.domain.types import TradeStatus, signed_qty
from trading_pipeline.steps.holding_orders import free_quantity
from trading_pipeline.steps.orders import is_dead, order_fields
from trading_pipeline.steps.reconciliation_result import Reconciliation, shares
from trading_pipeline.steps.vanished import close_on_fills, mark_unconfirmed, relink_renamed
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

__all__ = ["PENDING_GRACE", "Reconciliation", "reconcile_positions", "resolve_pending_entries", "shares"]

PENDING_GRACE = timedelta(minutes=2)


def resolve_pending_entries(
    db: Database,
    broker: Broker,
    result: Reconciliation,
    *,
    now: datetime | None = None,
    grace: timedelta = PENDING_GRACE,
    run_id: str | None = None,
) -> None:
    current = now or datetime.now(UTC)
    for trade in trades_repo.trades_with_status(db, TradeStatus.PENDING_OPEN):
        cid = trade.open_client_order_id
        if cid is None:
            result.failures[trade.symbol] = "pending entry without client_order_id"
            continue
        try:
            order = broker.order_by_client_order_id(cid)
            if order is not None and order.filled_qty > 0 and not order.is_terminal:
                # Partly filled and still working: cancel the rest now, so what was bought is protected as is.
                freed = free_quantity(broker, [order])
                order = next(iter([*freed.cancelled, *freed.filled]), order)
        except BrokerError as exc:
            result.failures[trade.symbol] = f"pending entry lookup failed: {exc}"
            continue
        if order is not None:
            orders_repo.upsert_order(db, order_fields(order, trade.id))
        if order is not None and order.filled_qty > 0 and order.filled_avg_price is not None and order.is_terminal:
            filled_at = order.filled_at or current
            if order.filled_qty < order.qty:
                adjustments_repo.open_partial_entry(
                    db, trade.id, client_order_id=cid, order=order, filled_at=filled_at, run_id=run_id
                )
                result.pending_partial += 1
            else:
                trades_repo.mark_entry_filled(
                    db,
                    trade.id,
                    client_order_id=cid,
                    fill_price=order.filled_avg_price,
                    filled_qty=order.filled_qty,
                    filled_at=filled_at,
                )
            result.pending_filled += 1
        elif order is not None and is_dead(order):
            trades_repo.cancel_pending_entry(
                db, trade.id, client_order_id=cid, reason=f"entry order {order.status} at the broker"
            )
            result.pending_cancelled += 1
        elif order is None and current - trade.entry_at >= grace:
            trades_repo.cancel_pending_entry(
                db, trade.id, client_order_id=cid, reason="the broker has no order with this client_order_id"
            )
            result.pending_cancelled += 1
        else:
            result.pending_waiting += 1


def reconcile_positions(
    db: Database,
    broker: Broker,
    *,
    now: datetime | None = None,
    broker_positions: list[BrokerPosition] | None = None,
    resolve_pending: bool = True,
    repair: bool = True,
    run_id: str | None = None,
) -> Reconciliation:
    """`broker_positions`: what this run already fetched (the protection step), so the broker is asked once.
    Raises BrokerError when the positions cannot be read at all (the caller reports it)."""
    result = Reconciliation()
    if resolve_pending:
        resolve_pending_entries(db, broker, result, now=now, run_id=run_id)
    positions = broker.positions() if broker_positions is None else broker_positions
    result.broker_positions = list(positions)
    compare(db, positions, result)
    if repair:
        repair_drift(db, broker, positions, result, run_id=run_id)
    return result


def compare(db: Database, positions: list[BrokerPosition], result: Reconciliation) -> None:
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for trade in trades_repo.open_trades(db, reuse=True):  # protection's read, unless a trade changed since
        expected[trade.symbol] += signed_qty(trade.qty, trade.side)
    # A `closing` row's order may or may not have filled yet: its symbol is judged after the sweep settles it.
    closing = {t.symbol for t in trades_repo.closing_trades(db, reuse=True)}
    result.closing_symbols = sorted(closing)
    held = {p.symbol: signed_qty(p.qty, p.side) for p in positions}
    result.db_symbols = len(expected)
    result.broker_symbols = len(held)
    for symbol in sorted((set(expected) | set(held)) - closing):
        want, have = expected.get(symbol), held.get(symbol)
        if want is None:
            result.extra_at_broker[symbol] = f"broker holds {shares(have)}, no open trade"
        elif have is None:
            result.missing_at_broker[symbol] = f"DB expects {shares(want)}, broker holds nothing"
        elif want != have:
            result.qty_mismatch[symbol] = f"DB expects {shares(want)}, broker holds {shares(have)}"
        else:
            result.matched += 1


def repair_drift(
    db: Database,
    broker: Broker,
    positions: list[BrokerPosition],
    result: Reconciliation,
    *,
    run_id: str | None = None,
) -> None:
    """Repair what the broker's book explains; report (unconfirmed) what it does not."""
    held = {p.symbol: p for p in positions}
    by_symbol: dict[str, list[trades_repo.TradeRecord]] = defaultdict(list)
    for trade in trades_repo.open_trades(db, reuse=True):
        by_symbol[trade.symbol].append(trade)
    if is_mass_disappearance(len(result.missing_at_broker), result.db_symbols):
        result.mass_disappearance = (
            f"{len(result.missing_at_broker)} of {result.db_symbols} symbols the DB holds are missing from the "
            f"broker's listing ({result.broker_symbols} symbols listed): another account's keys, or an empty "
            "listing during a broker incident? Nothing written off; entries halted until a person resumes"
        )
        for symbol in result.missing_at_broker:
            mark_unconfirmed(result, symbol, by_symbol.get(symbol, []), mass=True)
        return
    for symbol in sorted(result.qty_mismatch):
        trades, position = by_symbol.get(symbol, []), held.get(symbol)
        if not trades or position is None or any(t.side is not position.side for t in trades):
            continue  # a long against a short: nothing to cut, only to report
        if not (position.qty.is_finite() and position.avg_entry_price.is_finite()):
            continue  # an unreadable quantity (NaN): reported, never a number to cut a trade to
        ours = sum((t.qty for t in trades), Decimal(0))
        basis = sum((t.qty * t.entry_price for t in trades), Decimal(0)) / ours
        ratio = split_like_ratio(ours, basis, position.qty, position.avg_entry_price)
        if ratio is not None:
            result.possible_splits[symbol] = (
                f"DB {ours} at {basis:.2f}, broker {position.qty} at {position.avg_entry_price:.2f}: quantity × "
                f"{ratio} with the cost basis unchanged — a split? left alone until its corporate action is known"
            )
            del result.qty_mismatch[symbol]
            continue
        if position.qty < ours:
            _cut_to_held(db, broker, symbol, trades, position.qty, result, run_id)
        elif position.qty - ours < 1:
            _take_in_residue(db, symbol, trades, position.qty - ours, result, run_id)
    if result.missing_at_broker:
        missing = {s: by_symbol.get(s, []) for s in result.missing_at_broker}
        close_on_fills(db, broker, missing, result, run_id)
        wholly_missing = {s: missing[s] for s in result.unconfirmed if s in missing}
        relink_renamed(db, wholly_missing, held, by_symbol, result, run_id)


def _cut_to_held(
    db: Database,
    broker: Broker,
    symbol: str,
    trades: list[trades_repo.TradeRecord],
    held: Decimal,
    result: Reconciliation,
    run_id: str | None,
) -> None:
    """Keep the oldest trades whole while the broker's shares last and cut the next to what is left. A trade
    left with no shares at all closes only on a fill the broker shows; otherwise it stays open, unconfirmed."""
    left = held
    reason = f"broker holds {shares(held)} {symbol}, the DB {shares(sum(t.qty for t in trades))}: following the broker"
    without_shares = []
    for trade in sorted(trades, key=lambda t: (t.entry_at, str(t.id))):
        if left >= trade.qty:
            left -= trade.qty
        elif left > 0:
            adjustments_repo.reduce_to_held(db, trade.id, qty=left, reason=reason, run_id=run_id)
            left = Decimal(0)
        else:
            without_shares.append(trade)
    result.repaired[symbol] = reason
    if without_shares:
        close_on_fills(db, broker, {symbol: without_shares}, result, run_id)


def _take_in_residue(
    db: Database,
    symbol: str,
    trades: list[trades_repo.TradeRecord],
    extra: Decimal,
    result: Reconciliation,
    run_id: str | None,
) -> None:
    """A fraction of a share more at the broker than our trades hold (cash in lieu left a residue, a fractional
    fill): it descends from our trade, so the newest trade takes it in and it is protected with it."""
    newest = max(trades, key=lambda t: (t.entry_at, str(t.id)))
    reason = f"broker holds {shares(extra)} {symbol} more than the DB, a fraction of a share: taken into the trade"
    if adjustments_repo.add_residue(db, newest.id, qty=newest.qty + extra, reason=reason, run_id=run_id):
        result.repaired[symbol] = reason


