"""Checks on `closes`: positions protected, stops honoured, BUY:SELL sane, stop-loss runs healthy, DB healthy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg

from trading_pipeline.checks.helpers import result
from trading_pipeline.checks.limits import (
    CROSS_TO_CLOSE_MAX_RUNS,
    MAX_TRANSACTION_MS,
    MIN_STOP_LOSS_SUCCESS_RATE,
    SELLS_OWED_GRACE,
)
from trading_pipeline.domain.exits import InvalidQuote, decide_exit
from trading_pipeline.domain.types import ExitReason, PositionSide, Quote
from trading_pipeline.monitoring.health import StopLossDiagnosis
from trading_pipeline.store.database import DatabaseStats
from trading_pipeline.store.trades_repository import TradeRecord

WARN = dg.AssetCheckSeverity.WARN
BUY_SELL_DESCRIPTION = (
    "Today's buys are matched by something able to sell them: in a session, with positions open, a stop-loss run "
    "succeeded within 6 minutes of the latest buy or protection check. Buys going on while no stop-loss run "
    "succeeds is the seed app's silent failure (100 buys, 0 sells); a calm day with few sells is not."
)

SPECS = [
    dg.AssetCheckSpec(
        "every_position_judged",
        asset="closes",
        blocking=True,
        description=(
            "Every open position was judged against a usable quote in this sweep. A missing, stale, NaN, zero or "
            "crossed quote means its stop could not be checked: the position is unprotected until fixed."
        ),
    ),
    dg.AssetCheckSpec(
        "no_position_beyond_stop",
        asset="closes",
        blocking=True,
        description=(
            "After the sweep, no open position's latest quote is beyond its stop-loss. If one is, a close failed "
            "or was never attempted, and money is being lost."
        ),
    ),
    dg.AssetCheckSpec(
        "stops_honoured",
        asset="closes",
        description=(
            "Replaying the day's quotes: every time a price crossed a stop, the position was closed within 2 "
            "stop-loss runs. This is the outcome the whole product exists for."
        ),
    ),
    dg.AssetCheckSpec(
        "buy_sell_ratio",
        asset="closes",
        description=BUY_SELL_DESCRIPTION,
    ),
    dg.AssetCheckSpec(
        "stop_loss_run_health",
        asset="closes",
        description=(
            "At least 90% of the last 20 stop-loss runs succeeded, and in a session the last successful one is "
            "at most 6 minutes old (from Dagster's run records, not a separate bookkeeping)."
        ),
    ),
    dg.AssetCheckSpec(
        "db_health",
        asset="closes",
        description=(
            "This run's longest DB transaction stayed under 500 ms, no statement took over 1 s, and no connection "
            "was held while the broker was called (the seed's pool outage)."
        ),
    ),
]


def beyond_stop(trades: Sequence[TradeRecord], quotes: Mapping[str, Quote]) -> tuple[dict[str, str], dict[str, str]]:
    """(positions whose quote is beyond their stop-loss, positions that could not be judged and why)."""
    beyond: dict[str, str] = {}
    unjudged: dict[str, str] = {}
    for trade in trades:
        label = f"{trade.symbol} {str(trade.id)[:8]}"
        quote = quotes.get(trade.symbol)
        if trade.stop_loss is None:
            continue
        if quote is None:
            unjudged[label] = "no quote"
            continue
        try:
            decision = decide_exit(trade.position_view(), quote)
        except InvalidQuote as exc:
            unjudged[label] = exc.problem
            continue
        if decision is not None and decision.reason is ExitReason.STOP_LOSS:
            beyond[label] = f"quote {quote.bid}/{quote.ask}, stop {trade.stop_loss}"
    return beyond, unjudged


def every_position_judged(flagged: Mapping[str, str]) -> dg.AssetCheckResult:
    return result(
        "every_position_judged",
        not flagged,
        "all open positions judged" if not flagged else f"{len(flagged)} positions not judged",
        numbers={"flagged": len(flagged)},
        problems=dict(flagged),
    )


def no_position_beyond_stop(beyond: Mapping[str, str]) -> dg.AssetCheckResult:
    return result(
        "no_position_beyond_stop",
        not beyond,
        "no open position beyond its stop" if not beyond else f"{len(beyond)} beyond their stop",
        numbers={"beyond_stop": len(beyond)},
        problems=dict(beyond),
    )


@dataclass(frozen=True, slots=True)
class RunQuote:
    """A stored quote and the stop-loss run (by order of the day's runs) that fetched it."""

    run_index: int
    quote: Quote


def stops_honoured(
    trades: Sequence[TradeRecord],
    quotes_by_symbol: Mapping[str, Sequence[RunQuote]],
    *,
    run_ids: Sequence[str],
    max_runs: int = CROSS_TO_CLOSE_MAX_RUNS,
) -> dg.AssetCheckResult:
    """`run_ids`: the day's stop-loss runs in order; a trade closed by run k has closing_run_id == run_ids[k]."""
    position = {run_id: i for i, run_id in enumerate(run_ids)}
    last_run = len(run_ids) - 1
    late: dict[str, str] = {}
    crosses = 0
    for trade in trades:
        if trade.stop_loss is None or trade.close_reason is ExitReason.BROKER_STOP:
            continue
        cross = _first_cross(trade, quotes_by_symbol.get(trade.symbol, ()))
        if cross is None:
            continue
        crosses += 1
        label = f"{trade.symbol} {str(trade.id)[:8]}"
        closed_in = position.get(trade.closing_run_id or "") if trade.closed_at else None
        if closed_in is not None:
            if closed_in - cross.run_index > max_runs:
                late[label] = f"crossed in run {cross.run_index}, closed in run {closed_in}"
        elif trade.closed_at is None and last_run - cross.run_index >= max_runs:
            late[label] = f"crossed {cross.quote.timestamp:%H:%M:%S} UTC (run {cross.run_index}), still not closed"
    return stops_honoured_result(crosses, late, runs_today=len(run_ids), max_runs=max_runs)


def stops_honoured_result(
    crosses: int, late: Mapping[str, str], *, runs_today: int, max_runs: int = CROSS_TO_CLOSE_MAX_RUNS
) -> dg.AssetCheckResult:
    """The verdict, from the replay above or from the day's aggregates (checks/crosses.py) alike."""
    return result(
        "stops_honoured",
        not late,
        f"{crosses} stop crosses today, {len(late)} not closed within {max_runs} runs",
        numbers={"crosses": crosses, "late_or_missing_closes": len(late), "runs_today": runs_today},
        problems=dict(late),
    )


def quote_in_window(trade: TradeRecord, quote: Quote) -> bool:
    """A quote says something about a trade only while it was held: from its entry to its close."""
    return quote.timestamp >= trade.entry_at and (trade.closed_at is None or quote.timestamp <= trade.closed_at)


def crosses_stop(trade: TradeRecord, quote: Quote) -> bool:
    assert trade.stop_loss is not None
    if trade.side is PositionSide.LONG:
        return quote.bid <= trade.stop_loss
    return quote.ask >= trade.stop_loss


def _first_cross(trade: TradeRecord, quotes: Sequence[RunQuote]) -> RunQuote | None:
    for item in quotes:
        if item.quote.timestamp < trade.entry_at:
            continue
        if not quote_in_window(trade, item.quote):
            break
        if crosses_stop(trade, item.quote):
            return item
    return None


def buy_sell_ratio(
    buys: int,
    sells: int,
    *,
    open_positions: int,
    now: datetime,
    in_session: bool,
    first_buy_at: datetime | None,
    last_protected_at: datetime | None,
    grace: timedelta = SELLS_OWED_GRACE,
) -> dg.AssetCheckResult:
    """Compares what happened with what should have: every buy is owed a sell the moment its stop or target
    is crossed, and only a succeeding stop-loss run can pay it. So the check fails when buys stand with
    positions open and no stop-loss run has succeeded for `grace` since the later of the first buy and the
    last success — not on a ratio, which a calm healthy day exceeds and the seed's failure takes an hour to."""
    numbers = {"buys": buys, "sells": sells, "open_positions": open_positions}
    label = f"{buys}:{sells}"
    if not in_session or buys == 0 or open_positions == 0:
        why = "outside a session" if not in_session else "no buys today" if buys == 0 else "no position open"
        return result("buy_sell_ratio", True, f"{label} — not owed any sell ({why})", severity=WARN, numbers=numbers)
    marks = [m for m in (first_buy_at, last_protected_at) if m is not None]
    since = max(marks) if marks else now  # the later of the first buy and the last success
    waited = now - since
    numbers["minutes_without_protection"] = round(waited.total_seconds() / 60, 1)
    if waited <= grace:
        text = f"{label}; {waited.total_seconds():.0f}s since the last stop-loss success or the first buy"
        return result("buy_sell_ratio", True, text, severity=WARN, numbers=numbers)
    text = (
        f"{label} with {open_positions} positions open and no successful stop-loss run for "
        f"{waited.total_seconds() / 60:.0f} min (limit {grace.total_seconds() / 60:.0f}): entries go on while "
        "nothing can sell a crossed stop"
    )
    return result("buy_sell_ratio", False, text, severity=WARN, numbers=numbers)


def stop_loss_run_health(
    finished_statuses: Sequence[str], freshness: StopLossDiagnosis, *, min_rate: float = MIN_STOP_LOSS_SUCCESS_RATE
) -> dg.AssetCheckResult:
    total = len(finished_statuses)
    succeeded = sum(1 for s in finished_statuses if s == "SUCCESS")
    rate = succeeded / total if total else 1.0
    # Evaluated inside a stop-loss run: runs are being launched. With no success on record yet (a new install),
    # "not launched" is this very run starting the record, not a gap.
    first_ever = freshness.case == "runs_not_launched" and freshness.last_success_at is None
    passed = rate >= min_rate and (freshness.ok or first_ever)
    text = f"{succeeded}/{total} recent stop-loss runs succeeded ({rate:.0%}, limit {min_rate:.0%}); {freshness.detail}"
    return result(
        "stop_loss_run_health",
        passed,
        text,
        numbers={"success_rate": rate, "runs_considered": total, "freshness": freshness.case},
    )


def db_health(stats: DatabaseStats, *, max_transaction_ms: float = MAX_TRANSACTION_MS) -> dg.AssetCheckResult:
    problems = {}
    if stats.longest_transaction_ms > max_transaction_ms:
        problems["longest transaction"] = f"{stats.longest_transaction_ms:.0f} ms > {max_transaction_ms:.0f} ms"
    if stats.slow_statements:
        problems["slow statements"] = f"{stats.slow_statements} statements over 1 s"
    if stats.checkouts_during_broker_calls:
        problems["held during broker calls"] = f"{stats.checkouts_during_broker_calls} connection checkouts"
    return result(
        "db_health",
        not problems,
        f"longest transaction {stats.longest_transaction_ms:.1f} ms, {stats.slow_statements} slow statements, "
        f"{stats.checkouts_during_broker_calls} connections held during broker calls",
        numbers={
            "longest_transaction_ms": float(stats.longest_transaction_ms),
            "slow_statements": stats.slow_statements,
            "checkouts_during_broker_calls": stats.checkouts_during_broker_calls,
            "peak_checked_out": stats.peak_checked_out,
        },
        problems=problems,
    )
