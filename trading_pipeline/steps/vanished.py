"""Open trades the broker no longer holds: closed only on evidence, re-linked when their shares show under a
new symbol, otherwise kept open and reported as unconfirmed (issue 24: nothing is written off without evidence).

- a fill placed outside the pipeline in the symbol after the entry (the dashboard's "close position", another
  script, a bracket leg's broker-made id) closes the trade as `manual` at its price — our own closes are recorded
  through the claim protocol and are not evidence here;
- shares of exactly our quantity at our cost basis, unexplained by trades under another symbol, are the trade's
  after a name change not yet published: the trade follows them;
- otherwise the trade stays open, unconfirmed, looked up again every run.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from trading_pipeline.broker.base import Broker, BrokerError, BrokerPosition
from trading_pipeline.domain.drift import same_holding
from trading_pipeline.domain.ids import parse_client_order_id
from trading_pipeline.domain.types import closing_side
from trading_pipeline.steps.reconciliation_result import Reconciliation, shares
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database


def close_on_fills(
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
            mark_unconfirmed(result, symbol, group, mass=False)
        return
    for symbol, group in trades_by_symbol.items():
        for trade in sorted(group, key=lambda t: (t.entry_at, str(t.id))):
            side = closing_side(trade.side)
            after_entry = (o for o in fills if o.symbol == symbol and o.side is side)
            exit_fill = next((o for o in after_entry if (o.filled_at or trade.entry_at) >= trade.entry_at), None)
            if exit_fill is None:
                mark_unconfirmed(result, symbol, group, mass=False)
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


def relink_renamed(
    db: Database,
    unconfirmed: dict[str, list[trades_repo.TradeRecord]],
    held: dict[str, BrokerPosition],
    by_symbol: dict[str, list[trades_repo.TradeRecord]],
    result: Reconciliation,
    run_id: str | None,
) -> None:
    """Our shares under another symbol: a name change the corporate-actions feed has not published yet. As ours
    vanished, the broker lists shares we did not open — a new position, or more than our trades hold in another
    symbol — with exactly our quantity at our cost basis; the trade follows them (levels unchanged, the
    protection step re-arms at the broker under the new symbol)."""
    for symbol, trades in sorted(unconfirmed.items()):
        if not trades or any(t.side is not trades[0].side for t in trades):
            continue
        qty = sum((t.qty for t in trades), Decimal(0))
        basis = sum((t.qty * t.entry_price for t in trades), Decimal(0)) / qty
        candidates = [
            p.symbol
            for p in held.values()
            if p.symbol != symbol and p.side is trades[0].side and _unexplained_holding(p, by_symbol, qty, basis)
        ]
        if len(candidates) != 1:
            continue  # none, or ambiguous: left unconfirmed for a person (or the corporate actions) to decide
        new = candidates[0]
        reason = (
            f"{symbol} vanished and {new} shows {shares(qty)} more shares than our trades there, at the same cost "
            f"basis {basis:.2f}: a name change {symbol} → {new} not yet published; the trade follows its shares"
        )
        for trade in trades:
            adjustments_repo.rename_symbol(
                db, trade.id, action_key=f"inferred:{symbol}:{new}", new_symbol=new, reason=reason, run_id=run_id
            )
        result.relinked[symbol] = reason
        result.repaired[symbol] = reason
        result.unconfirmed.pop(symbol, None)
        result.unconfirmed_qty.pop(symbol, None)
        result.extra_at_broker.pop(new, None)
        result.qty_mismatch.pop(new, None)


def _unexplained_holding(
    position: BrokerPosition, by_symbol: dict[str, list[trades_repo.TradeRecord]], qty: Decimal, basis: Decimal
) -> bool:
    """The shares of `position` no open trade holds are `qty` shares at a cost basis of `basis` a share."""
    ours = [t for t in by_symbol.get(position.symbol, []) if t.side is position.side]
    excess = position.qty - sum((t.qty for t in ours), Decimal(0))
    if excess != qty:
        return False
    excess_cost = position.qty * position.avg_entry_price - sum((t.qty * t.entry_price for t in ours), Decimal(0))
    return same_holding(qty, basis, excess, excess_cost / excess)


def mark_unconfirmed(
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
