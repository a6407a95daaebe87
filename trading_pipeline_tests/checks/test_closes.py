"""`stop_loss_run_health` (checks/closes.py) judged on a real instance's run history: once a stop-loss run has
succeeded today, a gap with no runs launched fails the check — only a new install's first run is let through."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from dagster import DagsterRunStatus

from trading_pipeline.checks import closes as closes_checks
from trading_pipeline.definitions import defs
from trading_pipeline.monitoring.health import stop_loss_freshness
from trading_pipeline_tests.automation_fixtures import craft_run, project_instance

NY = ZoneInfo("America/New_York")
DAY = (2026, 11, 24)  # a Tuesday session


@pytest.fixture
def instance(tmp_path):
    with project_instance(tmp_path / "home") as inst:
        yield inst


def at(hour: int, minute: int) -> datetime:
    return datetime(*DAY, hour, minute, tzinfo=NY).astimezone(UTC)


def test_runs_not_launched_after_a_success_earlier_in_the_day_fails_stop_loss_run_health(instance) -> None:
    craft_run(instance, defs, DagsterRunStatus.SUCCESS, at(9, 34), at(9, 35))
    freshness = stop_loss_freshness(instance, now=at(10, 5))  # 30 minutes in session without a run
    assert (freshness.ok, freshness.case) == (False, "runs_not_launched")
    assert freshness.last_success_at == at(9, 35)
    verdict = closes_checks.stop_loss_run_health(["SUCCESS"], freshness)
    assert not verdict.passed
    assert verdict.metadata["freshness"].value == "runs_not_launched"


def test_a_new_installs_first_run_passes_stop_loss_run_health(instance) -> None:
    freshness = stop_loss_freshness(instance, now=at(10, 5))  # no stop-loss run ever
    assert (freshness.case, freshness.last_success_at) == ("runs_not_launched", None)
    assert closes_checks.stop_loss_run_health([], freshness).passed
