"""Checks on `quotes` (checks/quotes.py): quote age judged on whole durations, days included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading_pipeline.checks.quotes import quotes_fresh
from trading_pipeline.domain.types import Quote

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def test_a_quote_a_day_and_ten_seconds_old_fails_quotes_fresh() -> None:
    old = Quote("AAA", Decimal("99"), Decimal("99.1"), NOW - timedelta(days=1, seconds=10))
    fresh = Quote("BBB", Decimal("50"), Decimal("50.1"), NOW - timedelta(seconds=10))
    verdict = quotes_fresh({"AAA": old, "BBB": fresh}, now=NOW, in_session=True, max_age=timedelta(seconds=300))
    assert not verdict.passed
    assert verdict.metadata["stale"].value == 1
    assert verdict.metadata["oldest_quote_age_seconds"].value == 86410.0


def test_quotes_within_the_limit_pass_quotes_fresh() -> None:
    fresh = Quote("BBB", Decimal("50"), Decimal("50.1"), NOW - timedelta(seconds=299))
    assert quotes_fresh({"BBB": fresh}, now=NOW, in_session=True, max_age=timedelta(seconds=300)).passed
