"""The demo's outcome report: health first, then what happened to the positions, then the numbers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

_NY = ZoneInfo("America/New_York")


@dataclass
class DemoReport:
    session_date: date
    span: str
    positions_opened: int
    closes_by_reason: dict[str, int]
    buys: int
    sells: int
    open_positions: int
    oldest_open_minutes: float | None
    quote_requests: int
    positions_checked: int
    longest_transaction_ms: float
    checkouts_during_broker_calls: int
    runs_succeeded: int
    runs_failed: int
    failed_checks: list[str]
    beyond_stop: list[str]
    scripted: dict[str, str]
    wall_seconds: float
    dagster_home: Path
    database_path: Path
    reaction: str = ""  # gap → close, how and how fast
    trigger_runs: int = 0
    sensor_evaluations: int = 0

    @property
    def healthy(self) -> bool:
        return self.runs_failed == 0 and not self.beyond_stop and not self.failed_checks


def render_report(report: DemoReport) -> str:
    verdict = "HEALTHY" if report.healthy else "UNHEALTHY"
    ratio = f"{report.buys}:{report.sells}"
    by_runs = report.quote_requests - report.sensor_evaluations
    closes = ", ".join(f"{k} {v}" for k, v in sorted(report.closes_by_reason.items())) or "none"
    oldest = f"{report.oldest_open_minutes:.0f} min" if report.oldest_open_minutes is not None else "no open positions"
    lines = [
        "",
        f"== outcome report: NYSE session {report.session_date}, {report.span} ==",
        f"health                   {verdict}: {report.runs_succeeded} runs succeeded, {report.runs_failed} failed"
        + (f"; failed checks: {', '.join(report.failed_checks)}" if report.failed_checks else ""),
        f"positions beyond stop    {len(report.beyond_stop)}"
        + (f": {'; '.join(report.beyond_stop)}" if report.beyond_stop else ""),
        f"positions opened         {report.positions_opened}",
        f"closes by reason         {closes}",
        f"BUY:SELL orders          {ratio}",
        f"open positions           {report.open_positions} (oldest {oldest})",
        f"quote requests           {report.quote_requests} ({by_runs} by runs, {report.sensor_evaluations} by the "
        f"stop-trigger sensor) for {report.positions_checked} position checks",
        f"longest DB transaction   {report.longest_transaction_ms:.1f} ms; connections held during broker calls: "
        f"{report.checkouts_during_broker_calls}",
    ]
    for name, text in sorted(report.scripted.items()):
        lines.append(f"scripted {name:<15} {text}")
    if report.span != "full session":
        lines.append(
            "(a shorter span than the full session by default; `trading-pipeline demo --full-day` runs it all)"
        )
    lines += [
        f"stop trigger             {report.trigger_runs} runs requested from {report.sensor_evaluations} sensor ticks",
        f"reaction to the gap      {report.reaction or 'n/a'}",
        f"wall time                {report.wall_seconds:.1f} s",
        "",
        "See the runs in the UI:  .venv/bin/trading-pipeline ui   (the .env written here points it at this run)",
        f"Trading DB:              {report.database_path}",
        f"Health, outcomes, P&L:   DAGSTER_HOME={report.dagster_home} DATABASE_URL=sqlite:///{report.database_path} "
        f"trading-pipeline status --date {report.session_date}",
    ]
    return "\n".join(lines)


def clock_text(moment: datetime) -> str:
    return moment.astimezone(_NY).strftime("%H:%M:%S ET")


def reasons_text(meta: dict[str, Any]) -> str:
    reasons = meta.get("closes_by_reason") or {}
    parts = [f"{k} {v}" for k, v in sorted(reasons.items())] if isinstance(reasons, dict) else [str(reasons)]
    by_broker = int(meta.get("closed_by_broker_orders", 0))
    if by_broker:
        parts.append(f"{by_broker} by the broker's protective orders")
    return ", ".join(parts)
