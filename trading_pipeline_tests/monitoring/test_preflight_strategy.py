"""The pre-flight loads the configured strategy as a trading-day run will: a broken one is a NO-GO line
that names the problem and the fix, and the CLI exits 1 on it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from trading_pipeline.automation.registry import AUTOMATION
from trading_pipeline.broker.factory import broker_from_settings
from trading_pipeline.monitoring.preflight import render, run_preflight
from trading_pipeline.settings import Settings
from trading_pipeline_tests.sim_fixtures import running_sim
from trading_pipeline_tests.strategy_plugins import PATH

TUESDAY_0855 = datetime(2026, 11, 24, 8, 55, tzinfo=ZoneInfo("America/New_York"))


def strategy_item(sim_url: str, **env: str):
    environ = {"TRADING_PIPELINE_BROKER": "sim", "ALPACA_TRADING_URL": sim_url, **env}
    settings = Settings.from_env(environ)
    report = run_preflight(
        now=TUESDAY_0855,
        settings=settings,
        instance=None,
        db=None,  # only the strategy item is judged here
        environ=environ,
        broker_factory=lambda: broker_from_settings(settings, environ, timeout=2.0),
        automation=AUTOMATION,
    )
    return report, next(item for item in report.items if item.name == "strategy")


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"TRADING_PIPELINE_STRATEGY": "moonshot"}, "entry strategy 'moonshot': unknown strategy"),
        ({"TRADING_PIPELINE_STRATEGY": f"{PATH}:Missing"}, "has no attribute 'Missing'"),
        ({"TRADING_PIPELINE_STRATEGY": f"{PATH}:TwoArgumentStrategy"}, "does not take exactly one argument"),
        ({"TRADING_PIPELINE_STRATEGY_PARAMS": '{"stop_loss_pct": 120}'}, "stop_loss_pct: Input should be less than"),
    ],
)
def test_a_broken_strategy_is_a_no_go_line(env: dict[str, str], words: str) -> None:
    with running_sim(realtime=False) as sim:
        report, item = strategy_item(sim.url, **env)
    assert not report.go and not item.ok
    assert words in item.detail and " — " in item.detail
    assert "NO-GO  strategy" in render(report)


def test_a_good_strategy_is_go_and_says_what_was_loaded() -> None:
    with running_sim(realtime=False) as sim:
        _, item = strategy_item(sim.url, TRADING_PIPELINE_STRATEGY=f"{PATH}:GreedyStrategy")
    assert item.ok and item.detail == f"greedy (import path: {PATH}:GreedyStrategy) loads"
