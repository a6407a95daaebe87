"""`trading-pipeline status`: how is trading going — answered in the right order.

1. System health first (daemon heartbeats, schedules/sensors, the last stop-loss runs, failed checks, firing
   alerts). If anything is wrong, the first line says so in plain words, before any number about money.
2. Outcomes (closes by reason, BUY:SELL, oldest open position).
3. Only then P&L — a P&L from a system whose stops do not fire is not a P&L, it is a bet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
from dagster import RunsFilter

from trading_pipeline.domain.calendar import NEW_YORK
from trading_pipeline.domain.jsonsafe import to_jsonable
from trading_pipeline.domain.names import STOP_LOSS_JOB
from trading_pipeline.domain.types import OrderSide
from trading_pipeline.monitoring.health import (
    Automation,
    HealthItem,
    automation_states,
    daemon_health,
    stop_loss_freshness,
)
from trading_pipeline.steps.corporate_actions import DECISION_KIND as CORPORATE_ACTIONS_KIND
from trading_pipeline.steps.pnl import pnl_since
from trading_pipeline.store import adjustments_repository as adjustments_repo
from trading_pipeline.store import alerts_repository as alerts_repo
from trading_pipeline.store import orders_repository as orders_repo
from trading_pipeline.store import runs_repository as runs_repo
from trading_pipeline.store import trades_repository as trades_repo
from trading_pipeline.store.database import Database


@dataclass
class StatusReport:
    day: date
    health: list[HealthItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    last_runs: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, Any] = field(default_factory=dict)
    pnl: dict[str, Any] = field(default_factory=dict)
    levels: str = "levels_match_broker not evaluated yet"

    @property
    def healthy(self) -> bool:
        return all(item.ok for item in self.health)

    @property
    def problems(self) -> list[HealthItem]:
        return [item for item in self.health if not item.ok]

    def as_json(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "healthy": self.healthy,
                "day": self.day,
                "health": [{"name": i.name, "ok": i.ok, "detail": i.detail} for i in self.health],
                "warnings": self.warnings,
                "last_stop_loss_runs": self.last_runs,
                "outcomes": self.outcomes,
                "levels_match_broker": self.levels,
                "pnl": self.pnl,
            }
        )  # type: ignore[return-value]


def build_status(
    *,
    now: datetime,
    day: date,
    instance: dg.DagsterInstance | None,
    instance_problem: str | None,
    db: Database | None,
    db_problem: str | None,
    automation: Automation,
    check_specs: dict[dg.AssetCheckKey, dg.AssetCheckSpec] | None = None,
    alert_channels: Sequence[HealthItem] = (),
) -> StatusReport:
    """`alert_channels`: which channels reach a person and each one's last delivery (`monitoring.alert_channels`)."""
    report = StatusReport(day=day)
    if instance is None:
        report.health.append(HealthItem("dagster instance", False, instance_problem or "unavailable"))
    else:
        report.health += daemon_health(instance, now=now)
        report.health += automation_states(instance, automation)
        diagnosis = stop_loss_freshness(instance, now=now)
        report.health.append(HealthItem("stop-loss protection", diagnosis.ok, diagnosis.detail))
        report.last_runs = _last_runs(instance)
        _checks(instance, check_specs or {}, report)
        report.levels = _levels_check(instance)
    report.health += alert_channels
    if db is None:
        report.health.append(HealthItem("trading DB", False, db_problem or "unavailable"))
        return report
    switch = alerts_repo.current_trading_state(db)
    report.health.append(
        HealthItem(
            "kill switch",
            not switch.halted,
            f"HALTED by {switch.actor}: {switch.reason} — no new entries; `trading-pipeline resume` lifts it"
            if switch.halted
            else "trading (not halted)",
        )
    )
    firing = alerts_repo.firing_alerts(db)
    serious = [a for a in firing if a.severity in ("error", "critical")]
    report.health.append(
        HealthItem("alerts", not serious, f"{len(firing)} firing" + (f": {serious[0].title}" if serious else ""))
    )
    report.warnings += [f"alert: {a.title}" for a in firing if a not in serious]
    _outcomes_and_pnl(db, now, day, report)
    return report


def _last_runs(instance: dg.DagsterInstance, limit: int = 5) -> list[dict[str, Any]]:
    records = instance.get_run_records(RunsFilter(job_name=STOP_LOSS_JOB), limit=limit)
    return [
        {
            "run_id": r.dagster_run.run_id,
            "status": r.dagster_run.status.value,
            "created": r.create_timestamp,
            "trigger": r.dagster_run.tags.get("trading_pipeline/trigger", "manual"),
        }
        for r in records
    ]


def _checks(
    instance: dg.DagsterInstance, specs: dict[dg.AssetCheckKey, dg.AssetCheckSpec], report: StatusReport
) -> None:
    failed_errors = []
    for key in sorted(specs, key=lambda k: k.to_user_string()):
        record = instance.get_latest_asset_check_evaluation_record(key)
        evaluation = (
            record.event.dagster_event.event_specific_data
            if record and record.event and record.event.dagster_event
            else None
        )
        if evaluation is None or not hasattr(evaluation, "passed") or evaluation.passed:
            continue
        text = f"{key.to_user_string()}: {evaluation.description or specs[key].description}"
        if evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed_errors.append(text)
        else:
            report.warnings.append(f"check (WARN) {text}")
    report.health.append(
        HealthItem("asset checks", not failed_errors, "; ".join(failed_errors) or "no failed ERROR checks")
    )


def _levels_check(instance: dg.DagsterInstance) -> str:
    """The last verdict of `levels_match_broker`: do held positions' levels follow the broker (no split
    left un-re-based)?"""
    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("positions"), "levels_match_broker")
    )
    evaluation = record.event.dagster_event.event_specific_data if record and record.event.dagster_event else None
    if evaluation is None or not hasattr(evaluation, "passed"):
        return "levels_match_broker not evaluated yet"
    return "levels_match_broker passes" if evaluation.passed else f"levels_match_broker FAILS: {evaluation.description}"


def _outcomes_and_pnl(db: Database, now: datetime, day: date, report: StatusReport) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK)
    sides = orders_repo.count_orders_by_side(db, since=start)
    open_trades = trades_repo.open_trades(db)
    oldest = trades_repo.oldest_open_entry(db)
    report.outcomes = {
        "closes_by_reason": trades_repo.closes_by_reason(db, since=start),
        "buys": sides[OrderSide.BUY],
        "sells": sides[OrderSide.SELL],
        "open_positions": len(open_trades),
        "oldest_open_position_hours": round((now - oldest) / timedelta(hours=1), 1) if oldest else None,
        # Splits: was today's corporate-actions read done (the session-start marker), and what it re-based.
        "corporate_actions_read_today": runs_repo.decision_runs_since(db, kind=CORPORATE_ACTIONS_KIND, since=start) > 0,
        "split_rebases_today": sum(
            1
            for a in adjustments_repo.adjustments(db)
            if a.kind == adjustments_repo.SPLIT_REBASE and a.created_at >= start
        ),
    }
    pnl = pnl_since(db, start)
    report.pnl = {
        "realized_today": pnl.realized,
        "unrealized": pnl.unrealized,
        "marked_at": pnl.marked_at,
        "unmarked_positions": pnl.unmarked,
    }


def _grouped(items: list[HealthItem]) -> list[str]:
    """ "daemon SENSOR, daemon SCHEDULER: no heartbeat ever" instead of one line per daemon."""
    by_detail: dict[str, list[str]] = {}
    for item in items:
        by_detail.setdefault(item.detail, []).append(item.name)
    return [f"{', '.join(names)}: {detail}" for detail, names in by_detail.items()]


def render_status(report: StatusReport) -> str:
    lines = []
    if report.healthy:
        lines.append("HEALTH: OK — automation running, stop-loss protection fresh, no failed checks or alerts")
    else:
        words = "; ".join(_grouped(report.problems))
        lines.append(
            f"HEALTH: NOT OK — {len(report.problems)} problem(s). Do not trust the numbers below until fixed. {words}"
        )
    lines.append("")
    lines.append("== system health ==")
    width = max((len(i.name) for i in report.health), default=0)
    lines += [f"  {'OK ' if i.ok else 'BAD'}  {i.name:<{width}}  {i.detail}" for i in report.health]
    lines += [f"  WARN {w}" for w in report.warnings]
    if report.last_runs:
        lines.append("  last stop-loss runs: " + ", ".join(f"{r['status']} ({r['trigger']})" for r in report.last_runs))
    if report.outcomes:
        o = report.outcomes
        closes = ", ".join(f"{k} {v}" for k, v in sorted(o["closes_by_reason"].items())) or "none"
        lines += [
            "",
            f"== outcomes {report.day} ==",
            f"  closes by reason     {closes}",
            f"  BUY:SELL             {o['buys']}:{o['sells']}",
            f"  open positions       {o['open_positions']} (oldest {o['oldest_open_position_hours']} h)",
            f"  corporate actions    {'read' if o['corporate_actions_read_today'] else 'not read yet'} this "
            f"session, {o['split_rebases_today']} split re-base(s) applied; {report.levels}",
        ]
    if report.pnl:
        p = report.pnl
        unmarked = f" ({len(p['unmarked_positions'])} positions without a quote)" if p["unmarked_positions"] else ""
        lines += [
            "",
            "== P&L ==",
            f"  realized today       {p['realized_today']:,}",
            f"  unrealized           {p['unrealized']:,} at the last stored quotes{unmarked}",
        ]
    return "\n".join(lines)
