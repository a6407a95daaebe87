"""`stops_honoured` without the replay: each stop-loss run folds its own quotes into the day's crosses.

The replay (checks/closes.py `stops_honoured`) re-reads every quote of the day to find each trade's first
stop cross; its cost grows with every run. Here a run looks only at its own quotes for trades with no cross
yet today, and at the crosses still open, so the work per run depends on the positions and the open crosses,
not on how many runs came before. One difference, on purpose: a cross is judged against the stop in force when
the quote was taken, where the replay judges old quotes against today's latest stop (a trailing stop raised
at noon made the replay see morning "crosses" that were none)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import dagster as dg

from trading_pipeline.checks.closes import crosses_stop, quote_in_window, stops_honoured_result
from trading_pipeline.checks.limits import CROSS_TO_CLOSE_MAX_RUNS
from trading_pipeline.domain.types import ExitReason, Quote
from trading_pipeline.store.outcome_aggregates_repository import CrossRecord, CrossState, DayOutcome
from trading_pipeline.store.trades_repository import TradeRecord

RunPosition = Callable[[str | None], int | None]  # a run id → its index among the day's stop-loss runs


@dataclass
class Fold:
    """One run's change to the day, and the crosses still open or late after it (by entry time)."""

    new_crosses: list[CrossRecord] = field(default_factory=list)
    resolved: dict[uuid.UUID, tuple[CrossState, str | None]] = field(default_factory=dict)
    closed_in_time: int = 0
    live: list[CrossRecord] = field(default_factory=list)


def fold_run(
    day: DayOutcome,
    *,
    candidates: Iterable[TradeRecord],
    current: Mapping[uuid.UUID, TradeRecord],
    quotes: Mapping[str, Quote],
    run_index: int | None,
    run_position: RunPosition,
    max_runs: int = CROSS_TO_CLOSE_MAX_RUNS,
) -> Fold:
    """`candidates`: trades held at some point of this run (open, closing, closed during it); `current`: the
    trades of the day's open crosses as they are now; `run_index`: None when this run is no stop-loss run of
    the day (it then resolves open crosses but adds none)."""
    fold = Fold()
    known = {cross.trade_id for cross in day.crosses}
    now_rows: dict[uuid.UUID, TradeRecord] = dict(current)
    if run_index is not None:
        for trade in candidates:
            now_rows[trade.id] = trade
            if trade.id in known or trade.stop_loss is None or trade.close_reason is ExitReason.BROKER_STOP:
                continue
            quote = quotes.get(trade.symbol)
            if quote is None or not quote_in_window(trade, quote) or not crosses_stop(trade, quote):
                continue
            known.add(trade.id)
            cross = CrossRecord(
                trade.id, trade.symbol, trade.entry_at, run_index, quote.timestamp, CrossState.OUTSTANDING
            )
            fold.new_crosses.append(cross)
    for cross in [*day.crosses, *fold.new_crosses]:
        state, note = _resolve(cross, now_rows.get(cross.trade_id), run_position, max_runs)
        if state is cross.state:
            fold.live.append(cross)
            continue
        fold.closed_in_time += state is CrossState.IN_TIME
        if state is CrossState.LATE:
            fold.live.append(CrossRecord(**{**_fields(cross), "state": state, "note": note}))
        if cross in fold.new_crosses:  # not stored yet: store it as it ends
            fold.new_crosses[fold.new_crosses.index(cross)] = CrossRecord(
                **{**_fields(cross), "state": state, "note": note}
            )
        else:
            fold.resolved[cross.trade_id] = (state, note)
    fold.live.sort(key=lambda c: (c.entry_at, c.trade_id))
    return fold


def _resolve(
    cross: CrossRecord, trade: TradeRecord | None, run_position: RunPosition, max_runs: int
) -> tuple[CrossState, str | None]:
    if cross.state is not CrossState.OUTSTANDING or trade is None:
        return cross.state, cross.note
    if trade.close_reason is ExitReason.BROKER_STOP:
        return CrossState.BROKER_STOP, None
    if trade.closed_at is None:
        return CrossState.OUTSTANDING, None
    closed_in = run_position(trade.closing_run_id)
    if closed_in is not None and closed_in - cross.run_index > max_runs:
        return CrossState.LATE, f"crossed in run {cross.run_index}, closed in run {closed_in}"
    return CrossState.IN_TIME, None  # closed in time, or by something other than today's stop-loss runs


def _fields(cross: CrossRecord) -> dict[str, object]:
    return {name: getattr(cross, name) for name in CrossRecord.__slots__}


def stops_honoured_from_day(
    live: Iterable[CrossRecord], closed_in_time: int, *, runs_today: int, max_runs: int = CROSS_TO_CLOSE_MAX_RUNS
) -> dg.AssetCheckResult:
    """The same verdict and numbers as the replay, from the day's counters and its open or late crosses."""
    last_run = runs_today - 1
    late: dict[str, str] = {}
    count = closed_in_time
    for cross in live:
        count += 1
        label = f"{cross.symbol} {str(cross.trade_id)[:8]}"
        if cross.state is CrossState.LATE:
            late[label] = cross.note or ""
        elif last_run - cross.run_index >= max_runs:
            late[label] = f"crossed {cross.crossed_at:%H:%M:%S} UTC (run {cross.run_index}), still not closed"
    return stops_honoured_result(count, late, runs_today=runs_today, max_runs=max_runs)
