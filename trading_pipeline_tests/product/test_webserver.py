"""`dagster-webserver` on the repo's workspace.yaml shows what a user opens in the browser."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUERY = """
{
  assetNodes { assetKey { path } jobNames assetChecksOrError { ... on AssetChecks { checks { name blocking } } } }
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { jobs { name } schedules { name scheduleState { status } } sensors { name sensorState { status } } }
    }
  }
  workspaceOrError {
    ... on Workspace { locationEntries { name locationOrLoadError { __typename ... on PythonError { message } } } }
  }
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "TRADING_PIPELINE_DATA_DIR": str(home / "data")}
    env.pop("DATABASE_URL", None)
    log = open(home / "webserver.log", "w")  # noqa: SIM115 — closed in teardown
    executable = Path(sys.executable).with_name("dagster-webserver")
    process = subprocess.Popen(
        [str(executable), "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"dagster-webserver did not start:\n{(home / 'webserver.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield port, home / "webserver.log"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_ui_shows_the_asset_graph_checks_and_jobs(webserver) -> None:
    port, _ = webserver
    data = graphql(port, QUERY)["data"]
    entries = data["workspaceOrError"]["locationEntries"]
    assert [e["locationOrLoadError"]["__typename"] for e in entries] == ["RepositoryLocation"], entries
    assets = {tuple(node["assetKey"]["path"]): node for node in data["assetNodes"]}
    assert {("universe",), ("quotes",), ("positions",), ("entries",), ("closes",)} <= set(assets)
    assert "stop_loss_job" in assets[("closes",)]["jobNames"]
    assert "trading_day_job" in assets[("entries",)]["jobNames"]
    checks = {c["name"]: c["blocking"] for c in assets[("closes",)]["assetChecksOrError"]["checks"]}
    assert checks["no_position_beyond_stop"] is True and checks["every_position_judged"] is True
    repository = data["repositoriesOrError"]["nodes"][0]
    jobs = {job["name"] for job in repository["jobs"]}
    assert {"stop_loss_job", "trading_day_job", "flatten_job"} <= jobs
    for schedule in repository["schedules"]:  # automation defaults to RUNNING (Dagster's default is STOPPED)
        assert schedule["scheduleState"]["status"] == "RUNNING", schedule
    for sensor in repository["sensors"]:
        assert sensor["sensorState"]["status"] == "RUNNING", sensor


def test_definitions_load_without_warnings(webserver) -> None:
    _, log_path = webserver
    text = log_path.read_text()
    suspicious = [line for line in text.splitlines() if "Warning" in line or "ERROR" in line]
    assert suspicious == [], suspicious


def test_dg_check_defs_loads_the_project(tmp_path) -> None:
    """`[tool.dg]` in pyproject.toml: `dg check defs` / `dg dev` find the same definitions."""
    dg_cli = Path(sys.executable).with_name("dg")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "TRADING_PIPELINE_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"{dg_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [str(dg_cli), "check", "defs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "All definitions loaded successfully" in done.stdout + done.stderr
