"""Each check passes on a healthy fixture and fails on a crafted unhealthy one."""

from __future__ import annotations

import itertools
import string
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from scipy import stats

from trading_pipeline.checks import closes as closes_checks
from trading_pipeline.checks import positions as positions_checks
from trading_pipeline.checks import quotes as quotes_checks
from trading_pipeline.checks import universe as universe_checks
from trading_pipeline.domain.sampling import first_letter_histogram, shuffled_sample
from trading_pipeline.domain.stats import chi_square_pvalue, chi_square_statistic
from trading_pipeline.domain.types import ExitReason, PositionSide, Quote, TradeStatus
from trading_pipeline.monitoring.health import StopLossDiagnosis
from trading_pipeline.store.database import DatabaseStats
from trading_pipeline.store.trades_repository import TradeRecord

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 11:00 ET, a Tuesday
D = Decimal


def trade(
    symbol: str = "ACME",
    *,
    entry_at: datetime = NOW - timedelta(hours=1),
    status=TradeStatus.OPEN,
    stop: str | None = "95",
    closed_at: datetime | None = None,
    closing_run: str | None = None,
    reason: ExitReason | None = None,
    closing_since: datetime | None = None,
) -> TradeRecord:
    return TradeRecord(
        id=uuid.uuid4(),
        symbol=symbol,
        side=PositionSide.LONG,
        qty=D(10),
        entry_price=D(100),
        entry_at=entry_at,
        stop_loss=D(stop) if stop else None,
        take_profit=D(110),
        trailing_pct=None,
        high_water_mark=None,
        status=status,
        strategy="momentum",
        open_client_order_id=None,
        close_reason=reason,
        close_trigger_price=None,
        close_price=None,
        closed_at=closed_at,
        close_client_order_id="tp-x" if closing_since else None,
        close_attempts=0,
        closing_started_at=closing_since,
        closing_run_id=closing_run,
    )


def quote(bid: str, at: datetime, symbol: str = "ACME") -> Quote:
    return Quote(symbol, D(bid), D(bid) + D("0.05"), at)


# -- universe ---------------------------------------------------------------------------------------------


def universe_symbols() -> list[str]:
    letters = string.ascii_uppercase
    return sorted("".join(p) for p in itertools.product(letters, repeat=3))[:8000]


def test_letters_not_biased() -> None:
    universe = universe_symbols()
    healthy = universe_checks.letters_not_biased(
        first_letter_histogram(shuffled_sample(universe, 500, 3)), first_letter_histogram(universe)
    )
    alphabetical = universe_checks.letters_not_biased(
        first_letter_histogram(universe[:500]), first_letter_histogram(universe)
    )
    assert healthy.passed and not alphabetical.passed
    assert alphabetical.metadata["p_value"].value < 1e-10


def test_sample_size_as_configured() -> None:
    assert universe_checks.sample_size_as_configured(500, 500, 4000).passed
    assert universe_checks.sample_size_as_configured(300, 500, 300).passed  # smaller universe
    assert not universe_checks.sample_size_as_configured(499, 500, 4000).passed
    assert not universe_checks.sample_size_as_configured(0, 500, 0).passed


@pytest.mark.parametrize(("statistic", "dof"), [(0.5, 1), (25.0, 10), (100.0, 25), (3.0, 2), (400.0, 25)])
def test_chi_square_matches_scipy(statistic: float, dof: int) -> None:
    assert chi_square_pvalue(statistic, dof) == pytest.approx(stats.chi2.sf(statistic, dof), rel=1e-9, abs=1e-300)


def test_chi_square_statistic_matches_scipy() -> None:
    observed = {"A": 30, "B": 50, "C": 20}
    shares = {"A": 0.25, "B": 0.5, "C": 0.25}
    statistic, dof = chi_square_statistic(observed, shares)
    expected = stats.chisquare([30, 50, 20], [25, 50, 25])
    assert statistic == pytest.approx(expected.statistic) and dof == 2


# -- quotes -----------------------------------------------------------------------------------------------


def test_every_position_quoted() -> None:
    assert quotes_checks.every_position_quoted(["A", "B"], ["A", "B", "C"]).passed
    missing = quotes_checks.every_position_quoted(["A", "B"], ["A"])
    assert not missing.passed and missing.metadata["missing"].value == 1


def test_quotes_fresh_only_judged_in_session() -> None:
    fresh = {"A": quote("10", NOW - timedelta(seconds=30))}
    stale = {"A": quote("10", NOW - timedelta(minutes=12))}
    assert quotes_checks.quotes_fresh(fresh, now=NOW, in_session=True).passed
    assert not quotes_checks.quotes_fresh(stale, now=NOW, in_session=True).passed
    assert quotes_checks.quotes_fresh(stale, now=NOW, in_session=False).passed


def test_quotes_sane() -> None:
    assert quotes_checks.quotes_sane({}).passed
    assert not quotes_checks.quotes_sane({"A": "crossed: bid 10 > ask 9"}).passed


# -- positions --------------------------------------------------------------------------------------------


def test_oldest_open_position_age_in_trading_days() -> None:
    today = date(2026, 11, 30)  # Monday after Thanksgiving week
    recent = trade(entry_at=datetime(2026, 11, 25, 15, 0, tzinfo=UTC))  # Wed → Fri, Mon: 2 sessions later
    old = trade(entry_at=datetime(2026, 11, 19, 15, 0, tzinfo=UTC))  # sessions 20, 23, 24, 25, 27 (half), 30 → 6
    assert positions_checks.oldest_open_position_age([recent], today=today).passed
    verdict = positions_checks.oldest_open_position_age([recent, old], today=today)
    assert not verdict.passed and verdict.metadata["oldest_trading_days"].value == 6


def test_no_stale_closing_rows() -> None:
    runs = [NOW, NOW - timedelta(minutes=2), NOW - timedelta(minutes=4)]
    young = trade(status=TradeStatus.CLOSING, closing_since=NOW - timedelta(minutes=3))
    old = trade(status=TradeStatus.CLOSING, closing_since=NOW - timedelta(minutes=5))
    assert positions_checks.no_stale_closing_rows([young], run_starts=runs).passed
    assert not positions_checks.no_stale_closing_rows([young, old], run_starts=runs).passed
    assert positions_checks.no_stale_closing_rows([old], run_starts=runs[:2]).passed  # fewer than 3 runs: no verdict


def test_reconciliation_clean() -> None:
    assert positions_checks.reconciliation_clean({}, 5).passed
    assert not positions_checks.reconciliation_clean({"A": "DB expects 10, broker holds 5"}, 4).passed


# -- closes -----------------------------------------------------------------------------------------------

RUNS = [f"run-{i}" for i in range(6)]


def replay(t: TradeRecord, bids: list[str]):
    quotes = [closes_checks.RunQuote(i, quote(b, NOW + timedelta(minutes=2 * i))) for i, b in enumerate(bids)]
    return closes_checks.stops_honoured([t], {"ACME": quotes}, run_ids=RUNS)


def test_stops_honoured_replays_the_day() -> None:
    closed_in_time = trade(status=TradeStatus.CLOSED, closed_at=NOW + timedelta(minutes=6), closing_run="run-3")
    assert replay(closed_in_time, ["100", "99", "94", "93"]).passed  # crossed in run 2, closed in run 3
    never_closed = trade()
    verdict = replay(never_closed, ["100", "94", "93", "92", "91", "90"])
    assert not verdict.passed and "still not closed" in str(verdict.metadata["problems"].value)
    late = trade(status=TradeStatus.CLOSED, closed_at=NOW + timedelta(minutes=10), closing_run="run-5")
    assert not replay(late, ["100", "94", "93", "92", "91", "90"]).passed  # crossed in 1, closed in 5
    just_crossed = trade()
    assert replay(just_crossed, ["100", "100", "100", "100", "100", "94"]).passed  # one run ago: not late yet
    by_broker = trade(status=TradeStatus.CLOSED, reason=ExitReason.BROKER_STOP, closed_at=NOW, closing_run=None)
    assert replay(by_broker, ["94"] * 6).passed


def test_buy_sell_ratio_judges_whether_anything_can_sell_not_a_ratio() -> None:
    from datetime import UTC, datetime

    opened = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)  # 09:30 ET
    minutes = lambda m: opened + timedelta(minutes=m)  # noqa: E731

    def judge(buys, sells, *, now, last, open_positions=20, in_session=True, first=opened):
        return closes_checks.buy_sell_ratio(
            buys,
            sells,
            open_positions=open_positions,
            now=now,
            in_session=in_session,
            first_buy_at=first,
            last_protected_at=last,
        )

    # The 2026-12-02 demo: 20 buys, 3 sells after an hour, stop-loss runs succeeding: healthy (the old 5:1 failed it).
    assert judge(20, 3, now=minutes(60), last=minutes(59)).passed
    assert judge(20, 0, now=minutes(60), last=minutes(58)).passed  # a calm day: nothing crossed, nothing owed
    # The seed: buys go on, every stop-loss run fails — caught once 6 minutes pass without a success.
    assert judge(100, 0, now=minutes(5), last=None).passed  # the first run is not yet overdue
    seed = judge(100, 0, now=minutes(10), last=None)
    assert not seed.passed and "no successful stop-loss run for 10 min" in seed.description
    # Runs succeeded, then stopped, while positions stay open.
    assert not judge(20, 2, now=minutes(40), last=minutes(30)).passed
    # Yesterday's success does not cover today's buys.
    assert not judge(20, 0, now=minutes(8), last=opened - timedelta(hours=18)).passed
    assert judge(20, 0, now=minutes(90), last=None, in_session=False).passed
    assert judge(20, 0, now=minutes(90), last=None, open_positions=0).passed


def test_stop_loss_run_health() -> None:
    fresh = StopLossDiagnosis(True, "ok", "last success 60s ago", NOW)
    stale = StopLossDiagnosis(False, "runs_failing", "last success 20 min ago", NOW - timedelta(minutes=20))
    assert closes_checks.stop_loss_run_health(["SUCCESS"] * 19 + ["FAILURE"], fresh).passed
    assert not closes_checks.stop_loss_run_health(["SUCCESS"] * 15 + ["FAILURE"] * 5, fresh).passed
    assert not closes_checks.stop_loss_run_health(["SUCCESS"] * 20, stale).passed
    first = StopLossDiagnosis(False, "runs_not_launched", "never", None)
    assert closes_checks.stop_loss_run_health([], first).passed


def test_db_health() -> None:
    good = DatabaseStats(10, 12.5, 40, 0, 10, 1, 0)
    assert closes_checks.db_health(good).passed
    assert not closes_checks.db_health(DatabaseStats(10, 900.0, 40, 0, 10, 1, 0)).passed
    assert not closes_checks.db_health(DatabaseStats(10, 12.5, 40, 2, 10, 1, 0)).passed
    held = closes_checks.db_health(DatabaseStats(10, 12.5, 40, 0, 10, 2, 3))
    assert not held.passed and "held during broker calls" in str(held.metadata["problems"].value)


def test_beyond_stop_separates_crossed_from_unjudged() -> None:
    crossed, fine, unquoted, crossed_book = trade("DOWN"), trade("OK"), trade("GONE"), trade("BAD")
    quotes = {
        "DOWN": quote("94", NOW, "DOWN"),
        "OK": quote("99", NOW, "OK"),
        "BAD": Quote("BAD", D("99"), D("98"), NOW),
    }
    beyond, unjudged = closes_checks.beyond_stop([crossed, fine, unquoted, crossed_book], quotes)
    assert [k.split()[0] for k in beyond] == ["DOWN"]
    assert {k.split()[0]: v for k, v in unjudged.items()} == {"GONE": "no quote", "BAD": "crossed: bid 99 > ask 98"}
    assert not closes_checks.no_position_beyond_stop(beyond).passed
