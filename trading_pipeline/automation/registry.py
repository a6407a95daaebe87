"""The product's schedules and sensors in one list, so health checks can compare them with the instance
(`AUTOMATION` is what definitions and the CLI hand to `monitoring/`)."""

from __future__ import annotations

from trading_pipeline.automation.schedules import (
    health_schedule,
    performance_schedule,
    preflight_schedule,
    stop_loss_schedule,
    trading_day_schedule,
)
from trading_pipeline.automation.sensors import (
    asset_check_alert_sensor,
    automation_health_sensor,
    run_failure_alert_sensor,
    run_success_recovery_sensor,
    stop_loss_watchdog_sensor,
    stop_trigger_sensor,
)
from trading_pipeline.monitoring.health import Automation

SCHEDULES = [stop_loss_schedule, trading_day_schedule, preflight_schedule, health_schedule, performance_schedule]
SENSORS = [
    stop_trigger_sensor,
    run_failure_alert_sensor,
    run_success_recovery_sensor,
    asset_check_alert_sensor,
    stop_loss_watchdog_sensor,
    automation_health_sensor,
]

AUTOMATION = Automation(schedules=SCHEDULES, sensors=SENSORS)
