"""The daily performance table, as markdown (Dagster metadata) and as aligned text (the terminal).

Both come from the same rows and the same cell formatting, so the UI and `trading-pipeline report` show
the same numbers. Money is shown to the cent from Decimal; returns as percentages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal

from trading_pipeline.domain.performance import PerformanceRow, as_percent, growth_curve, win_rate

CENT = Decimal("0.01")
COLUMNS = (
    "date",
    "realized P&L",
    "unrealized P&L",
    "equity",
    "return",
    "SPY",
    "vs SPY",
    "win rate",
    "opened",
    "closed",
    "closes by reason",
    "BUY:SELL",
)
NUMERIC = frozenset(COLUMNS[1:10])


def money(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    return f"{value.quantize(CENT):,f}"


def reasons_text(reasons: Mapping[str, int]) -> str:
    listed = [f"{reason} {count}" for reason, count in sorted(reasons.items()) if count]
    return ", ".join(listed) if listed else "—"


def row_cells(row: PerformanceRow) -> dict[str, str]:
    return {
        "date": row.trading_date.isoformat(),
        "realized P&L": money(row.realized_pnl),
        "unrealized P&L": money(row.unrealized_pnl),
        "equity": money(row.equity),
        "return": as_percent(row.portfolio_return),
        "SPY": as_percent(row.spy_return),
        "vs SPY": as_percent(row.excess_return),
        "win rate": as_percent(row.win_rate, 0),
        "opened": str(row.trades_opened),
        "closed": str(row.trades_closed),
        "closes by reason": reasons_text(row.closes_by_reason),
        "BUY:SELL": row.buy_sell,
    }


def total_cells(rows: Sequence[PerformanceRow]) -> dict[str, str]:
    """The range as one line: summed P&L and counts, compounded returns, last equity."""
    curve = growth_curve([(r.trading_date, r.portfolio_return, r.spy_return) for r in rows])
    last = curve[-1]
    portfolio = (last.portfolio / 100) - 1
    benchmark = None if last.benchmark is None else (last.benchmark / 100) - 1
    reasons: Counter[str] = Counter()
    for row in rows:
        reasons.update(row.closes_by_reason)
    closed = sum(r.trades_closed for r in rows)
    return {
        "date": f"total ({len(rows)} days)",
        "realized P&L": money(sum((r.realized_pnl for r in rows), Decimal(0))),
        "unrealized P&L": money(rows[-1].unrealized_pnl),
        "equity": money(rows[-1].equity),
        "return": as_percent(portfolio),
        "SPY": as_percent(benchmark),
        "vs SPY": as_percent(None if benchmark is None else portfolio - benchmark),
        "win rate": as_percent(win_rate(sum(r.wins for r in rows), closed), 0),
        "opened": str(sum(r.trades_opened for r in rows)),
        "closed": str(closed),
        "closes by reason": reasons_text(reasons),
        "BUY:SELL": f"{sum(r.buys for r in rows)}:{sum(r.sells for r in rows)}",
    }


def table_cells(rows: Sequence[PerformanceRow], *, total: bool = True) -> list[dict[str, str]]:
    cells = [row_cells(row) for row in sorted(rows, key=lambda r: r.trading_date)]
    if total and len(rows) > 1:
        cells.append(total_cells(sorted(rows, key=lambda r: r.trading_date)))
    return cells


def markdown_table(rows: Sequence[PerformanceRow], *, total: bool = True) -> str:
    if not rows:
        return "_(no trading days)_"
    cells = table_cells(rows, total=total)
    align = ["---:" if name in NUMERIC else "---" for name in COLUMNS]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(c[name].replace("|", "\\|") for name in COLUMNS) + " |" for c in cells]
    return "\n".join(lines)


def text_table(rows: Sequence[PerformanceRow], *, total: bool = True) -> str:
    if not rows:
        return "(no trading days)"
    cells = table_cells(rows, total=total)
    widths = {name: max(len(name), *(len(c[name]) for c in cells)) for name in COLUMNS}

    def line(values: Mapping[str, str]) -> str:
        parts = [values[n].rjust(widths[n]) if n in NUMERIC else values[n].ljust(widths[n]) for n in COLUMNS]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * widths[name] for name in COLUMNS)
    body = [line(c) for c in cells]
    if total and len(rows) > 1:
        body.insert(-1, rule)
    return "\n".join([line({n: n for n in COLUMNS}), rule, *body])
