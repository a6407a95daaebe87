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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading_pipeline.broker.base import Broker, BrokerError, BrokerPosition
from trading_pipeline.domain.drift import is_mass_disappearance, same_holding, split_like_ratio
from trading_pipeline.domain.ids import parse_client_order_id
from trading_pipeline.domain.types import TradeStatus, closing_side, signed_qty
from trading_pipeline.steps.holding_orders import free_quantity
from trading_pipeline.steps.orders import is_dead, order_fields
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database

PENDING_GRACE = timedelta(minutes=2)


@dataclass
class Reconciliation:
    db_symbols: int = 0
    broker_symbols: int = 0
    matched: int = 0
    missing_at_broker: dict[str, str] = field(default_factory=dict)  # in the DB, not at the broker
    extra_at_broker: dict[str, str] = field(default_factory=dict)  # at the broker, not in the DB
    qty_mismatch: dict[str, str] = field(default_factory=dict)
    possible_splits: dict[str, str] = field(default_factory=dict)
    repaired: dict[str, str] = field(default_factory=dict)  # what the DB was changed to follow the broker
    pending_filled: int = 0
    pending_partial: int = 0
    pending_cancelled: int = 0
    pending_waiting: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    closing_symbols: list[str] = field(default_factory=list)
    unavailable: str | None = None  # the broker's positions could not be read: nothing was compared
    # Missing at the broker with no evidence of how they left: still open, looked up again every run.
    unconfirmed: dict[str, str] = field(default_factory=dict)
    unconfirmed_qty: dict[str, Decimal] = field(default_factory=dict)  # symbol → the shares the DB still holds
    relinked: dict[str, str] = field(default_factory=dict)  # OLD → NEW: our shares found under a new symbol
    mass_disappearance: str | None = None  # most of the book gone in one read: one incident, no write-off
    broker_positions: list[BrokerPosition] = field(default_factory=list)  # the listing compared, as read

    @property
    def clean(self) -> bool:
        return self.unavailable is None and not (
            self.missing_at_broker or self.extra_at_broker or self.qty_mismatch or self.possible_splits
        )

    @property
    def mismatches(self) -> dict[str, str]:
        found = {**self.missing_at_broker, **self.extra_at_broker, **self.qty_mismatch, **self.possible_splits}
        if self.unavailable:
            found["(positions)"] = self.unavailable
        return found


def shares(qty: Decimal | None) -> str:
    """A quantity as a person writes it: 55, not 55.00000000 (how NUMERIC(20, 8) returns it)."""
    if qty is None:
        return "?"
    return format(qty.normalize(), "f") if qty.is_finite() else str(qty)


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
            _mark_unconfirmed(result, symbol, by_symbol.get(symbol, []), mass=True)
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
        _close_on_fills(db, broker, missing, result, run_id)
        _relink_renamed(db, {s: missing[s] for s in result.unconfirmed if s in missing}, held, result, run_id)


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
        _close_on_fills(db, broker, {symbol: without_shares}, result, run_id)


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


def _close_on_fills(
    db: Database,
    broker: Broker,
    trades_by_symbol: dict[str, list[trades_repo.TradeRecord]],
    result: Reconciliation,
    run_id: str | None,
) -> None:
    """The broker holds none of these. A closing fill found at the broker (an order of the closing side, filled
    after the entry) is the evidence that closes a trade, at its price; without one it stays open and
    unconfirmed — the broker may be answering for another account, or a rename not yet published."""
    trades = [t for group in trades_by_symbol.values() for t in group]
    if not trades:
        return
    try:
        after = min(t.entry_at for t in trades) - timedelta(minutes=1)
        # Our own closes are recorded through the claim protocol: evidence here is a fill placed elsewhere (the
        # dashboard, another script) or a bracket leg's (ids the broker made).
        fills = [
            o
            for o in broker.closed_orders(set(trades_by_symbol), after)
            if o.is_filled and parse_client_order_id(o.client_order_id) is None
        ]
    except BrokerError as exc:
        for symbol, group in trades_by_symbol.items():
            result.failures[symbol] = f"not held at the broker; its closed orders unreadable, looked up next run: {exc}"
            _mark_unconfirmed(result, symbol, group, mass=False)
        return
    for symbol, group in trades_by_symbol.items():
        for trade in sorted(group, key=lambda t: (t.entry_at, str(t.id))):
            side = closing_side(trade.side)
            after_entry = (o for o in fills if o.symbol == symbol and o.side is side)
            exit_fill = next((o for o in after_entry if (o.filled_at or trade.entry_at) >= trade.entry_at), None)
            if exit_fill is None:
                _mark_unconfirmed(result, symbol, group, mass=False)
                continue
            fills.remove(exit_fill)  # one fill is evidence for one trade
            reason = f"the broker holds no {symbol}; closed outside the pipeline by order {exit_fill.client_order_id}"
            adjustments_repo.close_outside(
                db,
                trade.id,
                close_price=exit_fill.filled_avg_price,
                closed_at=exit_fill.filled_at or trade.entry_at,
                reason=reason,
                run_id=run_id,
            )
            result.repaired[symbol] = reason


def _relink_renamed(
    db: Database,
    unconfirmed: dict[str, list[trades_repo.TradeRecord]],
    held: dict[str, BrokerPosition],
    result: Reconciliation,
    run_id: str | None,
) -> None:
    """Our shares under another symbol: a name change the corporate-actions feed has not published yet. The
    broker lists a position we did not open with exactly our quantity at our cost basis as ours vanished; the
    trade follows it (levels unchanged, the protection step re-arms at the broker under the new symbol)."""
    for symbol, trades in sorted(unconfirmed.items()):
        if not trades or any(t.side is not trades[0].side for t in trades):
            continue
        qty = sum((t.qty for t in trades), Decimal(0))
        basis = sum((t.qty * t.entry_price for t in trades), Decimal(0)) / qty
        candidates = [
            p
            for s, p in held.items()
            if s in result.extra_at_broker
            and p.side is trades[0].side
            and same_holding(qty, basis, p.qty, p.avg_entry_price)
        ]
        if len(candidates) != 1:
            continue  # none, or ambiguous: left unconfirmed for a person (or the corporate actions) to decide
        new = candidates[0].symbol
        reason = (
            f"{symbol} vanished and {new} appeared with the same {shares(qty)} shares at the same cost basis "
            f"{basis:.2f}: a name change {symbol} → {new} not yet published; the trade follows its shares"
        )
        for trade in trades:
            adjustments_repo.rename_symbol(
                db, trade.id, action_key=f"inferred:{symbol}:{new}", new_symbol=new, reason=reason, run_id=run_id
            )
        result.relinked[symbol] = reason
        result.repaired[symbol] = reason
        result.unconfirmed.pop(symbol, None)
        result.unconfirmed_qty.pop(symbol, None)
        del result.extra_at_broker[new]


def _mark_unconfirmed(
    result: Reconciliation, symbol: str, trades: list[trades_repo.TradeRecord], *, mass: bool
) -> None:
    result.unconfirmed[symbol] = _unconfirmed_text(symbol, trades, mass=mass)
    result.unconfirmed_qty[symbol] = sum((t.qty for t in trades), Decimal(0))


def _unconfirmed_text(symbol: str, trades: list[trades_repo.TradeRecord], *, mass: bool) -> str:
    qty = sum((t.qty for t in trades), Decimal(0))
    looked = "nothing looked up: most of the book vanished at once" if mass else (
        "looked for: a closing fill at the broker since the entry, a name change or split in the corporate "
        "actions, our shares under another symbol — none found"
    )
    return (
        f"DB holds {shares(qty)} {symbol} (open since {min(t.entry_at for t in trades):%Y-%m-%d %H:%M} UTC) that the "
        f"broker does not list; {looked}. Still open in the DB, judged against its stop; looked up again every run"
        if trades
        else f"DB holds {symbol}, the broker lists none; {looked}"
    )
