"""`closes`: the stop-loss sweep — the commit-early close protocol — and the checks on its outcome."""

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster import DagsterRunStatus, RunsFilter

from trading_pipeline.assets.context import alert_daily_loss, day_start, guarded_broker, trading_date
from trading_pipeline.checks import closes as closes_checks
from trading_pipeline.checks import crosses
from trading_pipeline.checks.limits import STOP_LOSS_RUNS_CONSIDERED
from trading_pipeline.checks.metadata import db_stats_metadata, json_value, markdown_table, md, reasons_table
from trading_pipeline.domain.calendar import session_bounds
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.domain.types import ExitReason, OrderSide, Quote
from trading_pipeline.monitoring.health import stop_loss_freshness
from trading_pipeline.resources.alert_delivery import AlertDispatcher
from trading_pipeline.resources.alerts import AlertsResource
from trading_pipeline.resources.broker import BrokerResource
from trading_pipeline.resources.database import TradingDatabase
from trading_pipeline.resources.strategy import StrategyConfig
from trading_pipeline.steps.clock import read_clock
from trading_pipeline.steps.closes import run_stop_loss_sweep
from trading_pipeline.steps.entries import enforce_daily_loss
from trading_pipeline.steps.orders import TERMINAL_UNFILLED
from trading_pipeline.steps.sweep_result import SweepResult
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import outcome_aggregates_repository as outcome_repo
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.alerts_repository import current_trading_state
from trading_pipeline.store.database import Database
from trading_pipeline.store.trades_repository import TradeRecord

FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


class ClosesConfig(dg.Config):
    max_quote_age_seconds: int = 300  # during a session, an older quote is stale: flagged, not acted on


@dg.asset(
    deps=["positions"],
    group_name="trading",
    kinds={"python", "sql"},
    check_specs=closes_checks.SPECS,
    description=(
        "The stop-loss sweep: read open trades and commit; fetch quotes once per unique symbol; decide exits; "
        "for each exit claim open→closing in its own transaction, submit the order with its deterministic "
        "client_order_id with no DB connection checked out, then record the fill. Leftover `closing` rows from "
        "a crashed run are resolved first, by client_order_id at the broker."
    ),
)
def closes(
    context: dg.AssetExecutionContext,
    config: ClosesConfig,
    database: TradingDatabase,
    broker: BrokerResource,
    strategy: StrategyConfig,
    alerts: AlertsResource,
) -> dg.MaterializeResult:
    db = database.db
    run_id = context.run.run_id
    client = guarded_broker(broker, database)
    reading = read_clock(client)  # a clock outage falls back to the calendar: it never stops the sweep
    clock = reading.clock
    max_age, limits, settings_problem = strategy.sweep_settings()
    if settings_problem:  # reported and alerted, never a reason to stop protecting
        context.log.error(f"closes: invalid strategy settings ignored this run: {settings_problem}")
        alerts.dispatcher(db, context.log).fire(
            "config:strategy", "invalid strategy settings", settings_problem, severity="error", source="closes"
        )
    result = run_stop_loss_sweep(
        db,
        client,
        run_id=run_id,
        now=clock.timestamp,
        max_quote_age=timedelta(seconds=config.max_quote_age_seconds) if clock.is_open else None,
        prefetched=runs_repo.quotes_for_run(db, run_id),
        max_age_trading_days=max_age,
        market_open=clock.is_open,
        next_open=clock.next_open,
    )
    day = trading_date(clock)
    quotes = runs_repo.quotes_for_run(db, run_id)  # after the sweep: it stores its own when the quotes step failed
    breached, pnl_today = False, None
    if limits is not None:  # marked at this run's quotes: no look-up over the day's quote history
        breached, pnl_today = enforce_daily_loss(db, limits, day_start(day, clock.timestamp), quotes)
    if breached:
        alert_daily_loss(alerts, database, context, f"today's P&L {pnl_today:,.2f}")
    flagged = result.flagged_positions
    if flagged:
        context.log.error(f"closes: {len(flagged)} positions could not be judged: {flagged}")
    failures = {**result.failures, **result.book_problems}
    if failures:
        context.log.error(f"closes: failures: {failures}")
    if result.split_suspects:
        alerts.dispatcher(db, context.log).fire(
            "closes:possible_split",
            "possible stock split: positions not sold on it",
            "The broker's quantity moved by a split-like ratio with the cost basis unchanged, and no corporate "
            "action re-based it yet. Not sold (the price did not really move); check the corporate actions: "
            + "; ".join(f"{s}: {t}" for s, t in sorted(result.split_suspects.items())),
            severity="critical",
            source="closes",
        )
    if result.outside_orders_cancelled:
        # Someone else's order held the shares a stop-loss needed: it was cancelled, and a person must know.
        alerts.dispatcher(db, context.log).fire(
            f"closes:outside_orders:{run_id}",
            "orders placed outside the pipeline cancelled to close positions",
            "To sell what crossed its stop, these open orders that held the shares were cancelled: "
            + "; ".join(result.outside_orders_cancelled),
            severity="warning",
            source="closes",
        )
    alert_held_exits(alerts.dispatcher(db, context.log), result, market_open=clock.is_open)
    checks_started = time.perf_counter()  # the outcome checks' own cost, reported as `check_seconds`
    # The sweep's own read when it changed no trade (store/read_cache.py), else the trades as they are now.
    open_now, closing_now = trades_repo.open_trades(db, reuse=True), trades_repo.closing_trades(db, reuse=True)
    beyond = explain_beyond(positions_beyond_stop(db, quotes, open_now, closing_now), result)
    outcome_checks = outcome_check_results(
        context.instance,
        db,
        run_id=run_id,
        quotes=quotes,
        open_now=open_now,
        closing_now=closing_now,
        now=clock.timestamp,
        day=day,
    )
    stats = db.monitor.stats()
    check_seconds = time.perf_counter() - checks_started
    return dg.MaterializeResult(
        metadata={
            "positions_checked": result.positions_checked,
            "unique_symbols": result.unique_symbols,
            "quote_requests": result.quote_requests,
            "exits_decided": result.exits_decided,
            "orders_submitted": result.orders_submitted,
            "close_workers": result.close_workers,
            "last_close_submitted_s": "" if result.last_close_submitted_s is None else result.last_close_submitted_s,
            "closed": result.closed,
            "closed_stop_loss": result.closes_by_reason.get(ExitReason.STOP_LOSS.value, 0),
            "closed_take_profit": result.closes_by_reason.get(ExitReason.TAKE_PROFIT.value, 0),
            "closes_by_reason": json_value(dict(result.closes_by_reason)),
            "claims_lost_to_other_runs": result.claim_lost,
            "pending_fill": result.pending_fill,
            "leftovers_found": result.leftovers_found,
            "leftovers_closed": result.leftovers_closed,
            "leftovers_released": result.leftovers_released,
            "flagged_positions": md(reasons_table(flagged)),
            "failures": md(reasons_table(failures)),
            "closes_sized_without_a_read": len(result.blind_closes),
            "partial_closes": result.partial_closes,
            "drift_repaired_by_sweep": md(reasons_table(result.drift_repaired)),
            "holding_orders_cancelled": result.holding_orders_cancelled,
            "possible_splits_not_sold": md(reasons_table(result.split_suspects)),
            "waiting_for_open": md(reasons_table(result.waiting_for_open)),
            "exits_refused": md(reasons_table(result.refused)),
            "closes_sent_blind": md(reasons_table(result.blind_closes)),
            "outside_orders_cancelled": json_value(result.outside_orders_cancelled),
            "closed_positions": md(markdown_table(result.closed_trades)),
            **reading.metadata(),
            "settings_problem": settings_problem or "",
            "kill_switch": kill_switch_text(db),
            "daily_loss_breached": breached,
            **db_stats_metadata(stats),
            "check_seconds": round(check_seconds, 4),
            **({"pnl_today": float(pnl_today)} if pnl_today is not None else {}),
        },
        check_results=[
            closes_checks.every_position_judged(flagged),
            closes_checks.no_position_beyond_stop(beyond),
            *outcome_checks,
            closes_checks.db_health(stats),
        ],
    )


def alert_held_exits(dispatcher: AlertDispatcher, result: SweepResult, *, market_open: bool) -> None:
    """Exits decided and not sent: out of session (no silent queued market order), or refused by the broker for
    a reason that lasts. A person hears when each will be sold, or what they can do."""
    if result.waiting_for_open:
        dispatcher.fire(
            "closes:waiting_for_open",
            "positions beyond their stop while the market is closed",
            "No market order was queued (Alpaca would hold it to the next session without a word). Each is "
            "reported beyond its stop until then: "
            + "; ".join(f"{symbol}: {text}" for symbol, text in sorted(result.waiting_for_open.items())),
            severity="critical",
            source="closes",
        )
    elif market_open:
        dispatcher.resolve("closes:waiting_for_open", "the market is open: exits are sent again")
    for symbol in result.refusals_cleared:
        dispatcher.resolve(f"closes:refused:{symbol}", f"the broker accepted the exit of {symbol}")
    for symbol, text in sorted(result.new_refusals.items()):
        dispatcher.fire(
            f"closes:refused:{symbol}",
            f"the broker refused to close {symbol}",
            f"{symbol} is beyond its stop and the broker refused the exit: {text}",
            severity="critical",
            source="closes",
        )


def explain_beyond(beyond: dict[str, str], result: SweepResult) -> dict[str, str]:
    """Name, beside each position beyond its stop, why this run did not sell it (when it knows)."""
    why = {**result.waiting_for_open, **result.refused}
    return {key: f"{text} — {why[key.split()[0]]}" if key.split()[0] in why else text for key, text in beyond.items()}


def kill_switch_text(db: Database) -> str:
    state = current_trading_state(db)
    return f"HALTED by {state.actor}: {state.reason}" if state.halted else "trading"


def positions_beyond_stop(
    db: Database, quotes: dict[str, Quote], open_now: list[TradeRecord], closing_now: list[TradeRecord]
) -> dict[str, str]:
    """Open trades whose quote from this run says they should have been stopped out (unjudged ones are
    already flagged by every_position_judged), and `closing` trades with no live close order at the broker:
    a close that was claimed but never accepted protects nothing, so it counts as beyond its stop."""
    beyond, _ = closes_checks.beyond_stop(open_now, quotes)
    for trade in closing_now:
        order = orders_repo.get_order(db, trade.close_client_order_id) if trade.close_client_order_id else None
        if order is None or order.status in TERMINAL_UNFILLED:
            state = f"its close order {order.status}" if order else "no close order accepted by the broker"
            since = f"{trade.closing_started_at:%H:%M:%S} UTC" if trade.closing_started_at else "?"
            beyond[f"{trade.symbol} {str(trade.id)[:8]}"] = f"closing since {since} with {state}: retried next run"
    return beyond


def outcome_check_results(
    instance: dg.DagsterInstance,
    db: Database,
    *,
    run_id: str,
    quotes: dict[str, Quote],
    open_now: list[TradeRecord],
    closing_now: list[TradeRecord],
    now: datetime,
    day: date,
) -> list[dg.AssetCheckResult]:
    """The day's outcomes: stops honoured, BUY:SELL, and the stop-loss job's own run history. The stop
    crosses come from the day's aggregates, folded in here from this run's own quotes (checks/crosses.py):
    the work is the same in the day's last run as in its first."""
    bounds = session_bounds(day)
    day_start = bounds[0] if bounds else now - timedelta(hours=12)
    in_session = bounds is not None and bounds[0] <= now <= bounds[1]
    runs_today = instance.get_runs_count(RunsFilter(job_name=STOP_LOSS_JOB, created_after=day_start))
    position = run_positions(instance, day_start, run_id)
    outcome = fold_this_run(db, run_id, day, quotes, open_now, closing_now, position)
    sides = orders_repo.count_orders_by_side(db, since=day_start)
    finished = instance.get_run_records(
        RunsFilter(job_name=STOP_LOSS_JOB, statuses=FINISHED), limit=STOP_LOSS_RUNS_CONSIDERED
    )
    return [
        crosses.stops_honoured_from_day(outcome.live, outcome.closed_in_time, runs_today=runs_today),
        closes_checks.buy_sell_ratio(
            sides[OrderSide.BUY],
            sides[OrderSide.SELL],
            open_positions=len(open_now),
            now=now,
            in_session=in_session,
            first_buy_at=orders_repo.first_order_at(db, OrderSide.BUY, since=day_start),
            last_protected_at=now,  # this sweep is the protection (the health asset judges it from outside)
        ),
        closes_checks.stop_loss_run_health(
            [r.dagster_run.status.value for r in finished], stop_loss_freshness(instance, now=now.astimezone(UTC))
        ),
    ]


@dataclass(frozen=True, slots=True)
class DayCrosses:
    live: list[outcome_repo.CrossRecord]
    closed_in_time: int


def fold_this_run(
    db: Database,
    run_id: str,
    day: date,
    quotes: dict[str, Quote],
    open_now: list[TradeRecord],
    closing_now: list[TradeRecord],
    position: crosses.RunPosition,
) -> DayCrosses:
    """Read the day's aggregates, fold this run's quotes in, store the change in one short transaction."""
    seen = outcome_repo.read_day(db, day)
    if seen.last_run_id == run_id:  # a retried step of a run already folded in: never count it twice
        return DayCrosses(list(seen.crosses), seen.crosses_closed_in_time)
    first_quote = min((q.timestamp for q in quotes.values()), default=None)
    closed_during = trades_repo.closed_trades_since(db, first_quote) if first_quote is not None else []
    open_ids = [c.trade_id for c in seen.crosses if c.state is outcome_repo.CrossState.OUTSTANDING]
    fold = crosses.fold_run(
        seen,
        candidates=[*open_now, *closing_now, *closed_during],
        current=trades_repo.trades_by_ids(db, open_ids),
        quotes=quotes,
        run_index=position(run_id),
        run_position=position,
    )
    outcome_repo.apply_run(
        db,
        seen,
        run_id=run_id,
        new_crosses=fold.new_crosses,
        resolved=fold.resolved,
        closed_in_time=fold.closed_in_time,
    )
    return DayCrosses(fold.live, seen.crosses_closed_in_time + fold.closed_in_time)


def run_positions(instance: dg.DagsterInstance, day_start: datetime, run_id: str) -> crosses.RunPosition:
    """A run's index among the day's stop-loss runs by creation (what the replay numbered runs by), from two
    small run-storage reads per distinct run asked about: this run, and rarely a run that closed a trade."""
    cache: dict[str, int | None] = {}

    def position(wanted: str | None) -> int | None:
        if not wanted:
            return None
        if wanted not in cache:
            record = instance.get_run_record_by_id(wanted)
            if record is None or record.dagster_run.job_name != STOP_LOSS_JOB or record.create_timestamp <= day_start:
                cache[wanted] = None
            else:
                earlier = RunsFilter(
                    job_name=STOP_LOSS_JOB, created_after=day_start, created_before=record.create_timestamp
                )
                cache[wanted] = instance.get_runs_count(earlier)
        return cache[wanted]

    return position
