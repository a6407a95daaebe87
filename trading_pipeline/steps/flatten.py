"""Close everything now: a person's command to flatten the book (the `flatten` CLI command and `flatten_job`).

1. check the input (a reason; well-formed symbols) and read the broker: its clock, positions and open orders
   (unreadable → entries are halted anyway, nothing is sent, and the error says what to do)
2. a symbol asked for that the broker does not hold, has no order for and no trade of ours names → an error,
   before anything is done (a typo must not halt trading)
3. halt entries (the kill switch, with who and why)
4. cancel every open order on the symbols to flatten — bracket legs looked up by their parent, anyone's order —
   and confirm each cancel; our own closing orders still working are kept (they already close the position)
5. close what the broker holds: our trades through the stop-loss sweep's claim protocol (`close_position`,
   reason `manual`: an overlapping stop-loss run and a second flatten lose the claim and send nothing); what no
   trade of ours holds with a deterministic id derived from the position, and an audit row
6. record the fills (one listing), then report per position: closed, queued for the next open (the market is
   closed: Alpaca queues a DAY market order), already closing, or refused in the broker's words; and alert.

Every sell is sized against what the broker holds and never more; a short is bought back.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from trading_pipeline.broker.base import Broker, BrokerError, BrokerOrder, BrokerPosition, OrderRejected, OrderRequest
from trading_pipeline.broker.symbols import symbol_problem
from trading_pipeline.domain.exits import ExitDecision
from trading_pipeline.domain.ids import outside_close_client_order_id, parse_client_order_id
from trading_pipeline.domain.types import (
    ExitReason,
    OrderAction,
    closing_side,
    signed_qty,
)
from trading_pipeline.steps.broker_book import BrokerBook
from trading_pipeline.steps.clock import read_clock
from trading_pipeline.steps.close_fills import AwaitingFill, record_fills
from trading_pipeline.steps.close_orders import close_position
from trading_pipeline.steps.flatten_report import (
    ALREADY,
    FLAT,
    REFUSED,
    AlertSender,
    FlattenLine,
    FlattenResult,
    alert,
    held_text,
    outside_line,
    trade_line,
)
from trading_pipeline.steps.holding_orders import describe_order, free_quantity
from trading_pipeline.steps.orders import is_dead, order_fields
from trading_pipeline.steps.protection import ProtectionResult, parents_by_client_order_id, protection_orders
from trading_pipeline.steps.protection import flatten as with_legs
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import set_trading_state
from trading_pipeline.store.database import Database

MAX_OUTSIDE_ATTEMPTS = 5


class FlattenError(Exception):
    """Bad input or an unreadable broker: the message says what was wrong, what was done, and what to do."""


def flatten_book(
    db: Database,
    broker: Broker,
    *,
    reason: str | None,
    actor: str,
    symbols: Iterable[str] | None = None,
    run_id: str | None = None,
    alerts: AlertSender | None = None,
) -> FlattenResult:
    reason = (reason or "").strip()
    if not reason:
        raise FlattenError(
            'a reason is required: say why the book is flattened (--reason "…", or `reason` in the job\'s '
            "config); it is recorded with who and when. Nothing was done."
        )
    wanted = requested_symbols(symbols)
    result = FlattenResult(reason=reason, actor=actor)
    halt_reason = f"flatten: {reason}"
    try:
        positions = broker.positions()
        listed = with_legs(broker.open_orders())
    except BrokerError as exc:
        result.halted = set_trading_state(db, halted=True, actor=actor, reason=halt_reason)
        raise FlattenError(
            f"the broker could not be read ({exc}). Entries ARE halted (by {actor}); nothing was cancelled or "
            "sold. Check the broker (`trading-pipeline preflight` names what is wrong) and run the same command "
            "again; stop-loss runs keep protecting open positions meanwhile."
        ) from None
    result.clock = read_clock(broker)
    held = {p.symbol: p for p in positions}
    trades = trades_repo.open_trades(db)
    closing = trades_repo.closing_trades(db)
    known = set(held) | {o.symbol for o in listed if o.is_open} | {t.symbol for t in (*trades, *closing)}
    if wanted:
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise FlattenError(
                f"{', '.join(unknown)}: the broker holds no such position, has no open order for it and no trade "
                f"of ours names it — check the spelling (held now: {', '.join(sorted(held)) or 'nothing'}). "
                "Nothing was done: entries are not halted."
            )
    scope = sorted(wanted or known)
    result.halted = set_trading_state(db, halted=True, actor=actor, reason=halt_reason)

    blocked = cancel_orders(broker, scope, listed, [t for t in trades if t.symbol in scope], result)
    for symbol, why in sorted(blocked.items()):
        result.lines.append(FlattenLine(symbol, held_text(held.get(symbol)), "-", REFUSED, why))
    book = BrokerBook.read(broker, [s for s in scope if s not in blocked])  # after the cancels: free to sell now
    sweep = SweepResult()
    now = result.clock.clock.timestamp
    sent: list[tuple[trades_repo.TradeRecord, str]] = []
    outside: list[tuple[BrokerPosition, Decimal, BrokerOrder | None, str]] = []
    for symbol in (s for s in scope if s not in blocked):
        if symbol in book.unknown:
            result.lines.append(FlattenLine(symbol, "?", "-", REFUSED, f"{book.unknown[symbol]}: nothing sent"))
            continue
        before = book.positions.get(symbol)
        ours = [t for t in trades if t.symbol == symbol]
        already = [t for t in closing if t.symbol == symbol]
        for trade in already:
            detail = f"its closing order {trade.close_client_order_id} is already working: not sold again"
            result.lines.append(
                FlattenLine(symbol, held_text(before), "pipeline", ALREADY, detail, trade.close_client_order_id or "")
            )
        if before is None:
            # The broker's book is the truth: nothing to sell; the reconciliation records the trades closed outside.
            detail = "the broker holds none: nothing to sell (the reconciliation records it closed outside)"
            result.lines.extend(FlattenLine(symbol, "flat", "pipeline", FLAT, detail) for _ in ours)
            if not ours and not already:
                result.lines.append(FlattenLine(symbol, "flat", "-", FLAT, "nothing held; open orders cancelled"))
            continue
        for trade in ours:
            decision = ExitDecision(ExitReason.MANUAL, before.current_price or trade.entry_price)
            close_position(db, broker, trade, decision, run_id=run_id, result=sweep, now=now, book=book)
            sent.append((trade, held_text(before)))
        remainder = outside_remainder(before, [*ours, *already])
        # Our closes of outside shares still working (e.g. partly filled: the position's qty, and so the id an
        # order for the rest would get, changed) cover what they still have to fill: never a second order on top.
        working = [
            o
            for o in listed
            if o.symbol == symbol and is_our_close(o) and o.is_open and not names(o, [*ours, *already])
        ]
        covered = sum((o.remaining_qty for o in working), Decimal(0))
        if remainder > 0 and covered >= remainder:
            detail = f"its closing order {working[0].client_order_id} is already working: not sold again"
            result.lines.append(FlattenLine(symbol, held_text(before), "outside", ALREADY, detail))
        elif remainder > 0:
            qty = remainder - covered
            outside.append((before, qty, *close_outside(db, broker, before, qty, result, run_id)))
    result.orders_sent += sweep.orders_submitted
    result.cancelled.extend(f"outside the pipeline: {o}" for o in sweep.outside_orders_cancelled)

    awaiting = [AwaitingFill(trade, order, why) for trade, order, why in sweep.awaiting_fill]
    errors = record_fills(db, broker, awaiting, result=sweep, run_id=run_id, since=now) if awaiting else []
    for trade, held_before in sent:
        result.lines.append(trade_line(db, trade, held_before, sweep, result))
    for position, qty, order, problem in outside:
        result.lines.append(outside_line(db, broker, position, qty, order, problem, result))
    result.lines.sort(key=lambda line: (line.symbol, line.whose))
    if alerts is not None:
        alert(alerts, result)
    if errors:
        raise errors[0]  # a fill that could not be recorded: the row stays `closing`, the next sweep records it
    return result


def requested_symbols(symbols: Iterable[str] | None) -> list[str]:
    wanted = [s.strip().upper() for s in symbols or []]
    bad = {s or "(empty)": problem for s in wanted if (problem := symbol_problem(s))}
    if bad:
        listed = "; ".join(f"{s!r}: {why}" for s, why in bad.items())
        raise FlattenError(f"not a symbol: {listed}. Write it as the broker does (AAPL, BRK.B); nothing was done.")
    return sorted(set(wanted))


def names(order: BrokerOrder, trades: list[trades_repo.TradeRecord]) -> bool:
    """The order's id names one of these trades (else, if ours, it closes shares no trade of ours holds)."""
    parsed = parse_client_order_id(order.client_order_id)
    return parsed is not None and any(t.id == parsed[0] for t in trades)


def is_our_close(order: BrokerOrder) -> bool:
    parsed = parse_client_order_id(order.client_order_id)
    return parsed is not None and parsed[1] is OrderAction.CLOSE


def cancel_orders(
    broker: Broker,
    scope: list[str],
    listed: list[BrokerOrder],
    trades: list[trades_repo.TradeRecord],
    result: FlattenResult,
) -> dict[str, str]:
    """Cancel and confirm every open order on `scope` but our own working closes. {symbol: why it cannot be
    sold now} for the symbols whose cancels failed or are not confirmed (Alpaca would refuse the sale)."""
    blocked: dict[str, str] = {}
    # Bracket legs get broker-made ids: they are ours because their parent is.
    ours = {each.id for o in listed if parse_client_order_id(o.client_order_id) for each in o.with_legs()}
    by_symbol: dict[str, dict[str, BrokerOrder]] = {s: {} for s in scope}
    for order in listed:
        if order.symbol in by_symbol and order.is_open and not is_our_close(order):
            by_symbol[order.symbol][order.id] = order
    protected = [t for t in trades if t.protected]
    # A filled bracket's legs are not in an open listing: found under their parents, read in one listing (each
    # parent missing from it is looked up by its id).
    by_parent = parents_by_client_order_id(broker, protected, ProtectionResult())
    for trade in protected:
        try:
            legs = protection_orders(broker, trade, by_parent)
        except BrokerError as exc:
            blocked[trade.symbol] = f"its protective legs could not be looked up: {exc}"
            continue
        live = {leg.id: leg for leg in legs if leg.is_open and leg.remaining_qty > 0}
        by_symbol[trade.symbol].update(live)
        ours |= set(live)
    for symbol, orders in by_symbol.items():
        if not orders or symbol in blocked:
            continue
        freed = free_quantity(broker, orders.values())
        for order in [*freed.cancelled, *freed.filled]:
            whose = "ours: " if order.id in ours else "outside the pipeline: "
            result.cancelled.append(f"{whose}{describe_order(order)}")
        if not freed.free and not freed.filled:
            pending = "; ".join([*map(describe_order, freed.unconfirmed), *freed.failures])
            blocked[symbol] = f"open orders not cancelled yet ({pending}): nothing sold; run flatten again"
    return blocked


def outside_remainder(position: BrokerPosition | None, ours: list[trades_repo.TradeRecord]) -> Decimal:
    """Shares the broker holds beyond what our trades (open or already closing) account for, on the held side."""
    if position is None:
        return Decimal(0)
    held = signed_qty(position.qty, position.side)
    mine = sum((signed_qty(t.qty, t.side) for t in ours if t.side is position.side), Decimal(0))
    return max(Decimal(0), abs(held) - abs(mine))


def close_outside(
    db: Database, broker: Broker, position: BrokerPosition, qty: Decimal, result: FlattenResult, run_id: str | None
) -> tuple[BrokerOrder | None, str]:
    """(the order sent, ""), (None, the broker's words), or (the order an earlier flatten sent, ALREADY): the id
    comes from the position itself, so an order already sent for it is found instead of sending a second one."""
    side = closing_side(position.side)
    for attempt in range(MAX_OUTSIDE_ATTEMPTS):
        cid = outside_close_client_order_id(
            position.symbol, position.side.value, position.qty, position.avg_entry_price, attempt
        )
        try:
            existing = broker.order_by_client_order_id(cid)
        except BrokerError as exc:
            return None, f"could not look up {cid} before sending: {exc}"
        if existing is not None and (is_dead(existing) or existing.is_filled):
            continue  # ended unfilled, or filled and the same position bought again since: the next attempt
        if existing is not None:
            return existing, ALREADY  # sent by an earlier flatten and still working: not sent again
        request = OrderRequest(symbol=position.symbol, side=side, qty=qty, client_order_id=cid)
        try:
            order = broker.submit_order(request, confirm_fill=False)
        except OrderRejected as exc:
            return None, f"rejected by the broker: {exc.message}"
        except BrokerError as exc:
            return None, f"submit unresolved ({exc}): run flatten again, it looks {cid} up first"
        result.orders_sent += 1
        orders_repo.upsert_order(db, order_fields(order, None))
        adjustments_repo.record_outside_flatten(
            db,
            symbol=position.symbol,
            before={"side": position.side.value, "qty": str(position.qty), "avg_entry": str(position.avg_entry_price)},
            after={"client_order_id": cid, "side": side.value, "qty": str(qty), "status": order.status},
            reason=f"flatten by {result.actor}: {result.reason} (a position no trade of ours holds)",
            run_id=run_id,
        )
        return order, ""
    return None, f"{MAX_OUTSIDE_ATTEMPTS} closing orders for this position ended unfilled: close it by hand"
