"""Helpers that turn step results into Dagster metadata: numbers the UI plots, markdown previews, JSON.

Everything passes through to_jsonable first, so an SDK object, a UUID or a NaN can never break a
materialization event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from trading_pipeline.domain.jsonsafe import to_jsonable
from trading_pipeline.store.database import DatabaseStats

PREVIEW_ROWS = 20


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, limit: int = PREVIEW_ROWS
) -> str:
    if not rows:
        return "_(none)_"
    names = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in rows[:limit]:
        cells = [str(to_jsonable(row.get(name, ""))).replace("|", "\\|") for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more rows not shown_")
    return "\n".join(lines)


def reasons_table(reasons: Mapping[str, str], key: str = "symbol", value: str = "reason") -> str:
    return markdown_table([{key: k, value: v} for k, v in sorted(reasons.items())])


def histogram_table(counts: Mapping[str, int], label: str = "letter") -> str:
    total = sum(counts.values()) or 1
    rows = [
        {label: k, "count": n, "share": f"{n / total:.1%}", "bar": "█" * max(1, round(40 * n / total))}
        for k, n in counts.items()
    ]
    return markdown_table(rows, limit=100)


def json_value(value: Any) -> dg.MetadataValue:
    return dg.MetadataValue.json(to_jsonable(value))  # type: ignore[arg-type]


def md(text: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(text)


def db_stats_metadata(stats: DatabaseStats) -> dict[str, Any]:
    return {
        "db_longest_transaction_ms": float(stats.longest_transaction_ms),
        "db_longest_transaction_first_statement": stats.longest_transaction_statement or "(none)",
        "db_transactions": stats.transactions,
        "db_slow_statements": stats.slow_statements,
        "db_peak_checked_out": stats.peak_checked_out,
        "db_checkouts_during_broker_calls": stats.checkouts_during_broker_calls,
    }


def symbols_text(symbols: Iterable[str], limit: int = 50) -> str:
    listed = sorted(symbols)
    more = f" … (+{len(listed) - limit})" if len(listed) > limit else ""
    return ", ".join(listed[:limit]) + more if listed else "(none)"


# A check result whose asset alerts on the same finding itself names that alert's key here, so the check
# alert sensor dedupes with it (one NO-GO, one alert).
ALERT_KEY_METADATA = "trading_pipeline/alert_key"
