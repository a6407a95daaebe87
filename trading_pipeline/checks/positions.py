"""Checks on `positions`: reconciliation, old positions, and `closing` rows nobody finished."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

import dagster as dg

from trading_pipeline.checks.helpers import result
from trading_pipeline.checks.limits import MAX_OPEN_POSITION_TRADING_DAYS
from trading_pipeline.domain.calendar import NEW_YORK, trading_days_between
from trading_pipeline.store.trades_repository import TradeRecord

SPECS = [
    dg.AssetCheckSpec(
        "reconciliation_clean",
        asset="positions",
        description=(
            "Every open trade in the DB is held at the broker with the same quantity, and the broker holds nothing "
            "the DB does not know about. A mismatch means a stop may be protecting the wrong size, or nothing."
        ),
    ),
    dg.AssetCheckSpec(
        "oldest_open_position_age",
        asset="positions",
        description="No position has been open longer than 3 trading days: old positions mean exits are not firing.",
    ),
    dg.AssetCheckSpec(
        "no_stale_closing_rows",
        asset="positions",
        description=(
            "No trade has been stuck in `closing` for more than 2 stop-loss runs: a close was sent (or not) and "
            "never confirmed, so the position may still be open at the broker."
        ),
    ),
]


LEVELS_SPEC = dg.AssetCheckSpec(
    "levels_match_broker",
    asset="positions",
    description=(
        "No held position's quantity and price disagree with the broker by a split-like ratio: after a split "
        "that is not re-based, the stop sits at the old price — it fires at once (forward split) or never "
        "(reverse split)."
    ),
)
SPECS.append(LEVELS_SPEC)


CONFIRMED_SPEC = dg.AssetCheckSpec(
    "positions_confirmed",
    asset="positions",
    description=(
        "Every open trade is held at the broker, or its exit is explained by a fill or a corporate action. A "
        "position missing without evidence is never written off: it stays open (and judged against its stop), "
        "and this check fails until a fill, a corporate action or a person explains it. Not blocking: nothing "
        "upstream of the sweep may stop a stop-loss."
    ),
)
SPECS.append(CONFIRMED_SPEC)


def positions_confirmed(unconfirmed: Mapping[str, str], mass_disappearance: str | None) -> dg.AssetCheckResult:
    listed = "; ".join(f"{symbol}: {text}" for symbol, text in sorted(unconfirmed.items())[:3])
    more = f" (+{len(unconfirmed) - 3} more)" if len(unconfirmed) > 3 else ""
    summary = "every open trade is held at the broker or explained"
    if mass_disappearance:
        summary = f"INCIDENT: {mass_disappearance}"
    elif unconfirmed:
        summary = f"{len(unconfirmed)} unconfirmed: {listed}{more}"
    return result(
        "positions_confirmed",
        not unconfirmed and mass_disappearance is None,
        summary,
        numbers={"unconfirmed": len(unconfirmed), "mass_disappearance": int(mass_disappearance is not None)},
        problems=dict(unconfirmed),
    )


def levels_match_broker(possible_splits: Mapping[str, str]) -> dg.AssetCheckResult:
    listed = "; ".join(f"{symbol}: {text}" for symbol, text in sorted(possible_splits.items())[:3])
    return result(
        "levels_match_broker",
        not possible_splits,
        "levels follow the broker" if not possible_splits else f"possible splits not re-based: {listed}",
        numbers={"possible_splits": len(possible_splits)},
        problems=dict(possible_splits),
    )


PROTECTION_SPEC = dg.AssetCheckSpec(
    "protective_orders_live",
    asset="positions",
    description=(
        "Every position opened with protective orders still has its stop (and take-profit) live at the broker "
        "at the right prices — the defence that works while the pipeline is down."
    ),
)
SPECS.append(PROTECTION_SPEC)


def protective_orders_live(protected: int, unprotected: Mapping[str, str], recreated: list[str]) -> dg.AssetCheckResult:
    return result(
        "protective_orders_live",
        not unprotected,
        f"{protected - len(unprotected)} of {protected} protected positions have live legs; "
        f"{len(recreated)} re-created this run",
        numbers={"protected": protected, "unprotected": len(unprotected), "recreated": len(recreated)},
        problems=dict(unprotected),
    )


def reconciliation_clean(
    mismatches: Mapping[str, str], matched: int, *, repaired: Mapping[str, str] | None = None
) -> dg.AssetCheckResult:
    """Fails on every divergence, also when it was repaired this run: a person must hear that the broker's book
    and the pipeline's record disagreed. The description names each symbol with both quantities."""
    repaired = dict(repaired or {})
    listed = "; ".join(
        f"{symbol}: {text}" + (f" → repaired ({repaired[symbol]})" if symbol in repaired else "")
        for symbol, text in sorted(mismatches.items())[:5]
    )
    more = f" (+{len(mismatches) - 5} more)" if len(mismatches) > 5 else ""
    return result(
        "reconciliation_clean",
        not mismatches,
        "DB and broker agree" if not mismatches else f"{len(mismatches)} mismatches: {listed}{more}",
        numbers={"matched": matched, "mismatches": len(mismatches), "repaired": len(repaired)},
        problems=dict(mismatches),
    )


def oldest_open_position_age(
    trades: Sequence[TradeRecord], *, today: date, max_trading_days: int = MAX_OPEN_POSITION_TRADING_DAYS
) -> dg.AssetCheckResult:
    ages = {
        f"{t.symbol} {str(t.id)[:8]}": trading_days_between(t.entry_at.astimezone(NEW_YORK).date(), today)
        for t in trades
    }
    oldest = max(ages.values(), default=0)
    too_old = {k: f"open {v} trading days" for k, v in sorted(ages.items()) if v > max_trading_days}
    return result(
        "oldest_open_position_age",
        not too_old,
        f"oldest open position {oldest} trading days (limit {max_trading_days})",
        severity=dg.AssetCheckSeverity.WARN,
        numbers={"oldest_trading_days": oldest, "open_positions": len(trades)},
        problems=too_old,
    )


def no_stale_closing_rows(closing: Sequence[TradeRecord], *, run_starts: Sequence[datetime]) -> dg.AssetCheckResult:
    """`run_starts`: creation times of the latest stop-loss runs, newest first (this run included)."""
    cutoff = run_starts[2] if len(run_starts) > 2 else None
    stale = {
        f"{t.symbol} {str(t.id)[:8]}": f"closing since {t.closing_started_at:%H:%M:%S} UTC ({t.close_client_order_id})"
        for t in closing
        if cutoff is not None and t.closing_started_at is not None and t.closing_started_at < cutoff
    }
    return result(
        "no_stale_closing_rows",
        not stale,
        f"{len(closing)} closing rows, {len(stale)} older than 2 runs",
        numbers={"closing_rows": len(closing), "stale": len(stale)},
        problems=stale,
    )
