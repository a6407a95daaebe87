"""Green after the demo: the README's UI command, run after the demo in the same folder, opens the demo's
Dagster instance and trading DB (the `.env` the demo writes) with a broker every sensor can reach — and, read
through the webserver's GraphQL, every sensor's last tick succeeded (the seed of this test: after the demo,
all five sensors failed on every tick against an unmigrated ./data/trading.db, and nothing said so)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from trading_pipeline_tests.product.test_webserver import free_port, graphql

ROOT = Path(__file__).resolve().parents[2]
SENSOR_TICKS = """
{
  repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { status ticks(limit: 1) { status error { message } } } }
    schedules { name scheduleState { status ticks(limit: 1) { status error { message } } } }
  } } }
}
"""


def _clean_env(folder: Path) -> dict[str, str]:
    env = {**os.environ, "TRADING_PIPELINE_DATA_DIR": str(folder / "data")}
    for name in ("DAGSTER_HOME", "DATABASE_URL", "ALPACA_TRADING_URL", "ALPACA_DATA_URL", "TRADING_PIPELINE_BROKER"):
        env.pop(name, None)
    return env


@pytest.mark.slow
def test_every_sensor_ticks_without_error_in_the_ui_after_the_demo(tmp_path) -> None:
    shutil.copyfile(ROOT / "workspace.yaml", tmp_path / "workspace.yaml")
    cli = str(Path(sys.executable).with_name("trading-pipeline"))
    env = _clean_env(tmp_path)
    demo = subprocess.run(
        [cli, "demo", "--minutes", "4"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    dotenv = (tmp_path / ".env").read_text()
    assert f"DAGSTER_HOME={(tmp_path / 'data' / 'dagster_home').resolve()}" in dotenv
    assert f"DATABASE_URL=sqlite:///{(tmp_path / 'data' / 'demo' / 'trading.db').resolve()}" in dotenv

    port, sim_port = free_port(), free_port()
    log_path = tmp_path / "ui.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [cli, "ui", "--port", str(port), "--sim-port", str(sim_port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so the teardown ends dagster dev's webserver, daemon and code server too
        )
        try:
            ticks = _wait_for_a_tick_of_every_sensor(port, process, log_path)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    failed = {name: tick for name, tick in ticks.items() if tick["status"] == "FAILURE"}
    assert failed == {}, failed
    assert len(ticks) >= 6, ticks  # every sensor of the product ticked


def _wait_for_a_tick_of_every_sensor(port: int, process: subprocess.Popen, log_path: Path) -> dict[str, dict]:
    deadline = time.monotonic() + 240
    while True:
        if process.poll() is not None:
            pytest.fail(f"`trading-pipeline ui` exited {process.returncode}:\n{log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"not every sensor ticked within 240 s:\n{log_path.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
            nodes = graphql(port, SENSOR_TICKS)["data"]["repositoriesOrError"]["nodes"]
        except (OSError, KeyError, TypeError):
            time.sleep(2)
            continue
        sensors = nodes[0]["sensors"]
        ticks = {s["name"]: s["sensorState"]["ticks"][0] for s in sensors if s["sensorState"]["ticks"]}
        if sensors and len(ticks) == len(sensors):
            return ticks
        time.sleep(3)
