"""Checks on `quotes`: every open position quoted, none stale in a session, none insane."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import dagster as dg

from trading_pipeline.checks.helpers import result
from trading_pipeline.checks.limits import MAX_QUOTE_AGE
from trading_pipeline.domain.types import Quote

SPECS = [
    dg.AssetCheckSpec(
        "every_position_quoted",
        asset="quotes",
        description="Every open position got a quote. Without one its stop cannot be checked this run.",
    ),
    dg.AssetCheckSpec(
        "quotes_fresh",
        asset="quotes",
        description="During a session no quote is older than 5 minutes: a stale price can hide a crossed stop.",
    ),
    dg.AssetCheckSpec(
        "quotes_sane",
        asset="quotes",
        description="No quote with a zero, negative, NaN or crossed (bid > ask) price was returned or used.",
    ),
]


def every_position_quoted(open_symbols: Iterable[str], quoted: Iterable[str]) -> dg.AssetCheckResult:
    wanted, got = set(open_symbols), set(quoted)
    missing = {symbol: "no quote returned" for symbol in sorted(wanted - got)}
    return result(
        "every_position_quoted",
        not missing,
        f"{len(wanted) - len(missing)} of {len(wanted)} open symbols quoted",
        numbers={"open_symbols": len(wanted), "missing": len(missing)},
        problems=missing,
    )


def quotes_fresh(
    quotes: Mapping[str, Quote], *, now: datetime, in_session: bool, max_age: timedelta = MAX_QUOTE_AGE
) -> dg.AssetCheckResult:
    ages = {s: (now - q.timestamp).total_seconds() for s, q in quotes.items()}
    oldest = max(ages.values(), default=0.0)
    if not in_session:
        return result(
            "quotes_fresh",
            True,
            "market closed: quote age not judged",
            severity=dg.AssetCheckSeverity.WARN,
            numbers={"oldest_quote_age_seconds": oldest},
        )
    stale = {s: f"{age:.0f}s old" for s, age in sorted(ages.items()) if age > max_age.total_seconds()}
    return result(
        "quotes_fresh",
        not stale,
        f"oldest quote {oldest:.0f}s (limit {max_age.total_seconds():.0f}s)",
        severity=dg.AssetCheckSeverity.WARN,
        numbers={"oldest_quote_age_seconds": oldest, "stale": len(stale)},
        problems=stale,
    )


def quotes_sane(unusable: Mapping[str, str]) -> dg.AssetCheckResult:
    return result(
        "quotes_sane",
        not unusable,
        "no unusable quotes" if not unusable else f"{len(unusable)} unusable quotes (flagged, never traded on)",
        numbers={"unusable": len(unusable)},
        problems=dict(unusable),
    )
