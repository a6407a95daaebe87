"""The README's sample output is the demo's real output, and the demo is healthy whatever session it replays."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from trading_pipeline.harness.demo import Demo, DemoOptions
from trading_pipeline.harness.demo_report import render_report

ROOT = Path(__file__).resolve().parents[2]
# What differs from run to run: the machine's speed. Everything else is the seeded market and script.
VARIABLE = [
    (re.compile(r"longest DB transaction   [0-9.]+ ms"), "longest DB transaction   <ms> ms"),
    (re.compile(r"wall time                [0-9.]+ s"), "wall time                <s> s"),
]


def readme_sample() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("<!-- demo-output -->\n```\n", 1)[1].split("```", 1)[0]


def normalized(text: str) -> list[str]:
    for pattern, mask in VARIABLE:
        text = pattern.sub(mask, text)
    return text.rstrip("\n").splitlines()


@pytest.mark.slow
def test_readme_sample_output_is_the_real_output(tmp_path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME", "TRADING_PIPELINE_DATA_DIR")
    }
    cli = Path(sys.executable).with_name("trading-pipeline")
    done = subprocess.run([str(cli), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    real = done.stdout.replace(str((tmp_path / "data").resolve()), "./data")
    assert normalized(real) == normalized(readme_sample())


@pytest.mark.slow
def test_another_date_is_healthy_too_and_its_runs_carry_launcher_and_sim_time(tmp_path) -> None:
    """2026-12-02 ended UNHEALTHY on the fixed 5:1 BUY:SELL rule (20:3 after an hour, every run succeeding)."""
    out = io.StringIO()
    options = DemoOptions(data_dir=tmp_path, session_date=date(2026, 12, 2), minutes=62)
    report = Demo(options, out=out).run()
    assert report.healthy, render_report(report)
    assert (report.buys, report.sells) == (20, 3)  # the same day the old rule failed
    with dg.DagsterInstance.from_config(str(report.dagster_home)) as instance:
        runs = [r.dagster_run for r in instance.get_run_records()]
    launchers = {r.tags.get("dagster/schedule_name") or r.tags.get("dagster/sensor_name") for r in runs}
    assert launchers == {"trading_day_schedule", "stop_loss_schedule", "stop_trigger_sensor"}
    assert all(r.tags["trading_pipeline/sim_time"].startswith("2026-12-02T") for r in runs)
