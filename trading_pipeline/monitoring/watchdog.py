"""`trading-pipeline watchdog`: the external dead-man's switch, for cron or a systemd timer.

The Dagster daemon cannot report its own death, and Dagster's default heartbeat tolerance (1800 s) hides a
dead daemon for half an hour. Nor can any sensor report that every sensor is failing, or that the code
location does not load (then nothing of ours runs at all). This command runs outside the daemon, reads the
instance with a tight tolerance, loads the workspace as the daemon does, and alerts through the same
dispatcher with the same alert keys as the sensors (one incident, one alert); its exit code is non-zero
whenever anything is unhealthy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg

from trading_pipeline.monitoring.health import (
    DAEMON_ALERT_KEY,
    Automation,
    HealthItem,
    automation_states,
    daemon_health,
    stop_loss_freshness,
)
from trading_pipeline.monitoring.location import location_health
from trading_pipeline.monitoring.ticks import queue_health, tick_health
from trading_pipeline.resources.alert_delivery import AlertDispatcher

# While the daemon is down these are its consequences, not incidents of their own: said in its one alert.
CONSEQUENCES_OF_A_DEAD_DAEMON = ("stalled:", "run_queue", "watchdog:stop_loss")


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
    workspace_file: Path | None = None,
) -> WatchdogReport:
    items = daemon_health(instance, now=now, tolerance=heartbeat_tolerance)
    if workspace_file is not None:
        items += location_health(instance, workspace_file)
    items += automation_states(instance, automation)
    items += tick_health(instance, automation, now=now)
    items.append(queue_health(instance, now=now))
    diagnosis = stop_loss_freshness(instance, now=now, stale_after=stale_after)
    items.append(
        HealthItem(
            "stop-loss runs",
            diagnosis.ok,
            f"{diagnosis.case}: {diagnosis.detail}",
            alert_key="watchdog:stop_loss",  # the stop-loss watchdog sensor's key: one alert, whoever sees it
            action="open positions are protected only by the broker's own orders until a stop-loss run succeeds",
        )
    )
    return WatchdogReport(items)


def trading_db_item(problem: str | None) -> HealthItem:
    """The trading DB could not be opened: the reason itself, and the command that fixes the common case."""
    return HealthItem(
        "trading DB",
        False,
        f"trading DB unavailable: {problem or 'unknown reason'}",
        alert_key="trading_db",
        action=(
            "check DATABASE_URL and that the server is up; if the schema is behind, run `trading-pipeline db "
            "upgrade` with the same DATABASE_URL the code location uses"
        ),
    )


def incidents(items: Sequence[HealthItem]) -> dict[str, list[HealthItem]]:
    """Items grouped by the incident they belong to (their alert key; else one per item)."""
    grouped: dict[str, list[HealthItem]] = {}
    for item in items:
        grouped.setdefault(item.alert_key or f"external_watchdog:{item.name}", []).append(item)
    return grouped


def alert_on(report: WatchdogReport, dispatcher: AlertDispatcher) -> None:
    """One alert per incident: a failing one fires (de-duplicated with whoever else saw it), a healthy one
    resolves (recovery). While the daemon is dead, what it causes is said in its alert instead of alerting
    on its own."""
    grouped = incidents(report.items)
    daemon_down = any(not item.ok for item in grouped.get(DAEMON_ALERT_KEY, []))
    for key, items in grouped.items():
        bad = [item for item in items if not item.ok]
        if not bad:
            dispatcher.resolve(key, "; ".join(f"{i.name}: {i.detail}" for i in items))
            continue
        if daemon_down and key.startswith(CONSEQUENCES_OF_A_DEAD_DAEMON):
            continue
        text = incident_text(bad)
        if key == DAEMON_ALERT_KEY:
            consequences = [
                i.name
                for k, group in grouped.items()
                if k.startswith(CONSEQUENCES_OF_A_DEAD_DAEMON)
                for i in group
                if not i.ok
            ]
            if consequences:
                text += f" | meanwhile: {', '.join(consequences)}"
        dispatcher.fire(key, _title(key, bad), text, severity="critical", source="trading-pipeline watchdog")


def incident_text(bad: Sequence[HealthItem]) -> str:
    """One message for the items of one incident: each finding once (identical ones named together), then
    what to do, once."""
    if len(bad) == 1:
        return bad[0].alert_text()
    by_detail: dict[str, list[str]] = {}
    for item in bad:
        by_detail.setdefault(item.detail, []).append(item.name)
    found = "; ".join(f"{', '.join(names)}: {detail}" for detail, names in by_detail.items())
    actions = list(dict.fromkeys(item.action for item in bad if item.action))
    return f"{found}. What to do: {' '.join(actions)}" if actions else found


def _title(key: str, bad: Sequence[HealthItem]) -> str:
    if key == DAEMON_ALERT_KEY:
        return f"dagster-daemon not heartbeating ({', '.join(i.name.removeprefix('daemon ') for i in bad)})"
    name = bad[0].name.removesuffix(" ticks").removesuffix(" cadence")
    return f"{name} unhealthy" if len(bad) == 1 else f"{len(bad)} problems: {name}, …"


def render(report: WatchdogReport) -> str:
    verdict = "HEALTHY" if report.healthy else "UNHEALTHY"
    bad = sum(1 for i in report.items if not i.ok)
    lines = [f"watchdog: {verdict}" + (f" — {bad} problem(s)" if bad else "")]
    width = max(len(i.name) for i in report.items) if report.items else 0
    lines += [f"  {'OK ' if i.ok else 'BAD'}  {i.name:<{width}}  {i.detail}" for i in report.items]
    return "\n".join(lines)
