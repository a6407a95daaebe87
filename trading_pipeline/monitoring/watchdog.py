"""`trading-pipeline watchdog`: the external dead-man's switch, for cron or a systemd timer.

The Dagster daemon cannot report its own death, and Dagster's default heartbeat tolerance (1800 s) hides a
dead daemon for half an hour. This command runs outside the daemon, reads the instance with a tight
tolerance, and alerts through the same dispatcher; its exit code is non-zero whenever anything is unhealthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg

from trading_pipeline.monitoring.health import (
    Automation,
    HealthItem,
    automation_states,
    daemon_health,
    stop_loss_freshness,
)
from trading_pipeline.resources.alert_delivery import AlertDispatcher


@dataclass(frozen=True, slots=True)
class WatchdogReport:
    items: list[HealthItem]

    @property
    def healthy(self) -> bool:
        return all(item.ok for item in self.items)


def check_health(
    instance: dg.DagsterInstance,
    *,
    now: datetime,
    automation: Automation,
    heartbeat_tolerance: timedelta,
    stale_after: timedelta,
) -> WatchdogReport:
    items = daemon_health(instance, now=now, tolerance=heartbeat_tolerance)
    items += automation_states(instance, automation)
    diagnosis = stop_loss_freshness(instance, now=now, stale_after=stale_after)
    items.append(HealthItem("stop-loss runs", diagnosis.ok, f"{diagnosis.case}: {diagnosis.detail}"))
    return WatchdogReport(items)


def alert_on(report: WatchdogReport, dispatcher: AlertDispatcher) -> None:
    """One alert key per item: a failing item fires (de-duplicated), a healthy one resolves (recovery)."""
    for item in report.items:
        key = f"external_watchdog:{item.name}"
        if item.ok:
            dispatcher.resolve(key, f"{item.name}: {item.detail}")
        else:
            dispatcher.fire(
                key,
                f"watchdog: {item.name} unhealthy",
                item.detail,
                severity="critical",
                source="trading-pipeline watchdog",
            )


def render(report: WatchdogReport) -> str:
    verdict = "HEALTHY" if report.healthy else "UNHEALTHY"
    bad = sum(1 for i in report.items if not i.ok)
    lines = [f"watchdog: {verdict}" + (f" — {bad} problem(s)" if bad else "")]
    width = max(len(i.name) for i in report.items) if report.items else 0
    lines += [f"  {'OK ' if i.ok else 'BAD'}  {i.name:<{width}}  {i.detail}" for i in report.items]
    return "\n".join(lines)
