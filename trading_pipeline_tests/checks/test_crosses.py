"""The incremental `stops_honoured` (each run folds in its own quotes) gives the replay's verdict and numbers."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

from trading_pipeline.checks import closes as closes_checks
from trading_pipeline.checks import crosses
from trading_pipeline.domain.types import ExitReason, TradeStatus
from trading_pipeline.store.outcome_aggregates_repository import DayOutcome
from trading_pipeline_tests.checks.test_checks import NOW, quote, trade

RUNS = [f"run-{i}" for i in range(8)]
# symbol → bid per run (stop 95), the run the trade closes in (None: never), its close reason, the run it opens in
DAY = {
    "INTIME": (["100", "94", "93"], 2, ExitReason.STOP_LOSS, 0),
    "NEVER": (["100", "94", "94", "93", "99", "99", "99", "99"], None, None, 0),
    "LATE": (["94", "93", "92", "91", "90"], 4, ExitReason.STOP_LOSS, 0),
    "BROKER": (["100", "94", "93"], 2, ExitReason.BROKER_STOP, 0),
    "CALM": (["100"] * 8, None, None, 0),
    "LATER": (["90", "90", "90", "100", "94", "96"], 5, ExitReason.STOP_LOSS, 3),  # bought after the dip
    "TP": (["100", "120"], 1, ExitReason.TAKE_PROFIT, 0),
}


def quote_time(run: int):
    return NOW + timedelta(minutes=2 * run)


def state_at(base, symbol: str, run: int):
    _bids, closed_in, reason, _opened = DAY[symbol]
    if closed_in is not None and closed_in <= run:
        return dataclasses.replace(
            base,
            status=TradeStatus.CLOSED,
            closed_at=quote_time(closed_in) + timedelta(seconds=30),
            closing_run_id=RUNS[closed_in] if reason is not ExitReason.BROKER_STOP else None,
            close_reason=reason,
        )
    return base


def bid_at(symbol: str, run: int) -> str:
    bids = DAY[symbol][0]
    return bids[min(run, len(bids) - 1)]


def test_the_fold_matches_the_replay_after_every_run() -> None:
    bases = {s: trade(s, entry_at=quote_time(DAY[s][3]) - timedelta(seconds=1)) for s in DAY}
    day = DayOutcome(date(2026, 11, 24), 0, None, 0, ())
    for run in range(len(RUNS)):
        held = [s for s in DAY if DAY[s][3] <= run]
        now = {s: state_at(bases[s], s, run) for s in held}
        quotes = {s: quote(bid_at(s, run), quote_time(run), s) for s in held}
        candidates = [t for s, t in now.items() if t.closed_at is None or t.closed_at >= quote_time(run)]
        position = {run_id: i for i, run_id in enumerate(RUNS[: run + 1])}
        fold = crosses.fold_run(
            day,
            candidates=candidates,
            current={t.id: t for t in now.values()},
            quotes=quotes,
            run_index=run,
            run_position=lambda run_id, position=position: position.get(run_id or ""),
        )
        day = DayOutcome(
            day.trading_day, run + 1, RUNS[run], day.crosses_closed_in_time + fold.closed_in_time, tuple(fold.live)
        )
        ours = crosses.stops_honoured_from_day(fold.live, day.crosses_closed_in_time, runs_today=run + 1)

        replay_quotes = {
            s: [closes_checks.RunQuote(i, quote(bid_at(s, i), quote_time(i), s)) for i in range(DAY[s][3], run + 1)]
            for s in held
        }
        ordered = sorted(now.values(), key=lambda t: (t.entry_at, t.id))
        replay = closes_checks.stops_honoured(ordered, replay_quotes, run_ids=RUNS[: run + 1])
        assert (ours.passed, ours.description) == (replay.passed, replay.description), run
        assert ours.metadata == replay.metadata, run
    assert not ours.passed and ours.metadata["crosses"].value == 4  # INTIME, NEVER, LATE, LATER (not BROKER)
    assert ours.metadata["late_or_missing_closes"].value == 2  # NEVER still open, LATE closed in run 4


def test_a_cross_is_judged_against_the_stop_in_force_when_quoted() -> None:
    """A stop raised later does not turn this morning's quotes into crosses (the replay's one difference)."""
    held = trade("TRAIL")
    day = DayOutcome(date(2026, 11, 24), 0, None, 0, ())
    fold = crosses.fold_run(
        day,
        candidates=[held],
        current={},
        quotes={"TRAIL": quote("97", NOW, "TRAIL")},
        run_index=0,
        run_position=lambda _run: None,
    )
    assert fold.new_crosses == [] and fold.live == []
