"""`positions`: open trades reconciled with the broker's positions; pending entries resolved by id."""

from datetime import date, timedelta
from decimal import Decimal

import dagster as dg

from trading_pipeline.assets.context import day_start, guarded_broker, trading_date
from trading_pipeline.broker.base import BrokerError
from trading_pipeline.checks import positions as positions_checks
from trading_pipeline.checks.metadata import json_value, markdown_table, md, reasons_table
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.monitoring.runs import recent_runs
from trading_pipeline.resources.alert_delivery import AlertDispatcher
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.resources.strategy import StrategyConfig
from trading_pipeline.steps.clock import read_clock
from trading_pipeline.steps.corporate_actions import (
    CorporateActionsResult,
    apply_corporate_actions,
    read_at_session_start,
)
from trading_pipeline.steps.outside_positions import OutsidePositions, handle_outside_positions
from trading_pipeline.steps.protection import ProtectionResult, protect_positions
from trading_pipeline.steps.reconcile import Reconciliation, reconcile_positions, resolve_pending_entries
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import current_trading_state, set_trading_state
from trading_pipeline.store.database import Database


@dg.asset(
    deps=["quotes"],
    group_name="trading",
    kinds={"python", "sql"},
    check_specs=positions_checks.SPECS,
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=6), warn_window=timedelta(minutes=3)),
    description="Open trades in the DB vs positions at the broker: missing, extra and quantity mismatches.",
)
def positions(
    context: dg.AssetExecutionContext,
    database: TradingDatabase,
    broker: BrokerResource,
    alerts: AlertsResource,
    strategy: StrategyConfig,
) -> dg.MaterializeResult:
    """Never fails on a broker outage: what could not be read becomes a failed check (and so an alert), and the
    closes step after it still runs — nothing here may block a stop-loss."""
    db = database.db
    client = guarded_broker(broker, database)
    reading = read_clock(client)
    now, run_id = reading.clock.timestamp, context.run.run_id
    result = Reconciliation()
    # Pending entries first: an entry that filled since the last run becomes an open trade before protection
    # looks for its legs (its bracket's stop may already have closed it at the broker).
    resolve_pending_entries(db, client, result, now=now, run_id=run_id)
    # Splits re-based before anything judges a price against a stop: once per session for every held symbol.
    today = trading_date(reading.clock)
    actions = read_at_session_start(db, client, today=today, session_start=day_start(today, now), run_id=run_id)
    # Second line of defence next: record what the broker's own stops closed, re-arm missing legs, cancel
    # orphans — so the reconciliation below compares the DB with the broker as it really is now.
    try:
        protection = protect_positions(db, client, now=now)
        held = protection.broker_positions
    except BrokerError as exc:
        protection = ProtectionResult(failures={"(positions)": f"broker positions unreadable: {exc}"})
        held = None
    try:
        reconciled = reconcile_positions(
            db, client, now=now, broker_positions=held, resolve_pending=False, run_id=run_id
        )
        reconciled.pending_filled, reconciled.pending_partial = result.pending_filled, result.pending_partial
        reconciled.pending_cancelled, reconciled.pending_waiting = result.pending_cancelled, result.pending_waiting
        reconciled.failures.update(result.failures)
        result = reconciled
        # A held symbol's quantity moved (a split the session-start read did not know yet?), or a symbol vanished
        # without a fill (a name change?): its corporate actions are looked up again, every run until explained.
        moved = sorted({*result.possible_splits, *result.qty_mismatch, *result.unconfirmed})
        if moved and result.mass_disappearance is None:
            again = apply_corporate_actions(db, client, today=today, symbols=moved, run_id=run_id)
            _merge_actions(actions, again)
            if again.rebased or again.renamed:  # re-arm protection at the new prices, compare again
                protection = protect_positions(db, client, now=now)
                result = reconcile_positions(
                    db, client, now=now, broker_positions=protection.broker_positions, resolve_pending=False
                )
    except BrokerError as exc:
        result.unavailable = f"broker positions unreadable, DB and broker not compared this run: {exc}"
    outside = OutsidePositions()
    if result.unavailable is None:
        outside = handle_outside_positions(
            db,
            client,
            result.broker_positions,
            result,
            policy=strategy.outside_positions,
            stop_loss_pct=Decimal(str(strategy.stop_loss_pct)),
            take_profit_pct=Decimal(str(strategy.take_profit_pct)),
            now=now,
            run_id=run_id,
        )
    dispatcher = alerts.dispatcher(db, context.log)
    report_unconfirmed(dispatcher, db, result)
    report_outside(dispatcher, outside, today=today)
    mismatches = result.mismatches
    if mismatches:
        context.log.error(f"positions: {len(mismatches)} reconciliation mismatches: {mismatches}")
    if result.repaired:
        context.log.error(f"positions: the DB was repaired to follow the broker: {result.repaired}")
    open_trades = trades_repo.open_trades(db, reuse=True)  # reconciliation's read, unless a trade changed since
    run_starts = [r.create_timestamp for r in recent_runs(context.instance, STOP_LOSS_JOB, limit=3)]
    protection_problems = {**protection.unprotected, **protection.failures}
    return dg.MaterializeResult(
        metadata={
            "open_positions": len(open_trades),
            "open_symbols_db": result.db_symbols,
            "open_symbols_broker": result.broker_symbols,
            "matched": result.matched,
            "missing_at_broker": len(result.missing_at_broker),
            "extra_at_broker": len(result.extra_at_broker),
            "qty_mismatch": len(result.qty_mismatch),
            "possible_splits": len(result.possible_splits),
            "repaired": len(result.repaired),
            "repairs": md(reasons_table(result.repaired)),
            "unconfirmed": md(reasons_table(result.unconfirmed)),
            "relinked_to_new_symbols": md(reasons_table(result.relinked)),
            "mass_disappearance": result.mass_disappearance or "",
            "outside_positions_adopted": md(reasons_table(outside.adopted)),
            "outside_positions_unprotected": md(reasons_table(outside.unprotected)),
            "pending_entries_filled": result.pending_filled,
            "pending_entries_partly_filled": result.pending_partial,
            "pending_entries_cancelled": result.pending_cancelled,
            "pending_entries_waiting": result.pending_waiting,
            "mismatches": md(reasons_table(mismatches)),
            "failures": md(reasons_table(result.failures)),
            "protected_positions": protection.protected_positions,
            "protection_verified": protection.verified,
            "protection_recreated": len(protection.recreated),
            "closed_by_broker_orders": len(protection.broker_closes),
            "broker_closes": md(markdown_table(protection.broker_closes)),
            "orphan_orders_cancelled": len(protection.orphans_cancelled),
            "broker_stops_raised": json_value(protection.stops_raised),
            "corporate_actions_read": actions.read,
            "corporate_actions": json_value(actions.actions),
            "split_rebased": len(actions.rebased),
            "split_rebases": md(reasons_table(actions.rebased)),
            "symbols_renamed": md(reasons_table(actions.renamed)),
            **reading.metadata(),
        },
        check_results=[
            positions_checks.reconciliation_clean(mismatches, result.matched, repaired=result.repaired),
            positions_checks.levels_match_broker(result.possible_splits),
            positions_checks.positions_confirmed(result.unconfirmed, result.mass_disappearance),
            positions_checks.protective_orders_live(
                protection.protected_positions, protection_problems, protection.recreated
            ),
            positions_checks.oldest_open_position_age(open_trades, today=trading_date(reading.clock)),
            positions_checks.no_stale_closing_rows(trades_repo.closing_trades(db, reuse=True), run_starts=run_starts),
        ],
    )


def report_unconfirmed(dispatcher: AlertDispatcher, db: Database, result: Reconciliation) -> None:
    """Positions the broker no longer lists, with no evidence of how they left, are never written off: a
    person is told (one incident), and a whole book vanishing halts entries until someone resumes."""
    if result.mass_disappearance:
        if not current_trading_state(db).halted:
            set_trading_state(
                db, halted=True, actor="pipeline (reconciliation)", reason=result.mass_disappearance[:500]
            )
        dispatcher.fire(
            "positions:mass_disappearance",
            "the broker's book no longer shows most of our positions",
            result.mass_disappearance
            + ". Check ALPACA_API_KEY (the right account?) and Alpaca's status; then `trading-pipeline resume`.",
            severity="critical",
            source="positions",
        )
    if result.unconfirmed:
        dispatcher.fire(
            "positions:unconfirmed",
            f"{len(result.unconfirmed)} positions missing at the broker without a fill",
            "; ".join(f"{symbol}: {text}" for symbol, text in sorted(result.unconfirmed.items())),
            severity="critical",
            source="positions",
        )
    elif result.unavailable is None:
        dispatcher.resolve("positions:unconfirmed", "every open trade is held at the broker, or its exit was found")


def report_outside(dispatcher: AlertDispatcher, outside: OutsidePositions, *, today: date) -> None:
    """One alert per adopted position; one a day per position left unprotected (never silently)."""
    for symbol, text in sorted(outside.adopted.items()):
        dispatcher.fire(
            f"positions:adopted:{symbol}",
            f"{symbol}: a position the pipeline did not open is now protected",
            text + ". Policy TRADING_PIPELINE_OUTSIDE_POSITIONS=adopt; to sell it now: `trading-pipeline flatten "
            f"--symbol {symbol} --reason ...`.",
            severity="warning",
            source="positions",
        )
    for symbol, text in sorted(outside.unprotected.items()):
        dispatcher.fire(
            f"positions:outside:{symbol}:{today.isoformat()}",
            f"{symbol}: held at the broker and NOT protected by the pipeline",
            text + ". Set TRADING_PIPELINE_OUTSIDE_POSITIONS=adopt to protect such positions, or close it at Alpaca.",
            severity="warning",
            source="positions",
        )


def _merge_actions(into: CorporateActionsResult, more: CorporateActionsResult) -> None:
    into.read = into.read or more.read
    into.actions += [a for a in more.actions if a not in into.actions]
    into.rebased.update(more.rebased)
    into.renamed.update(more.renamed)
    into.failures.update(more.failures)
