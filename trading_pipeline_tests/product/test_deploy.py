"""The production instance config in deploy/ loads on a real PostgreSQL and keeps the repo's limits."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_config_repeats_the_repo_limits() -> None:
    repo_config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    production = yaml.safe_load((ROOT / "deploy" / "dagster.postgres.yaml").read_text())
    assert production["concurrency"] == repo_config["concurrency"]
    assert production["run_monitoring"] == repo_config["run_monitoring"]
    for unit in (ROOT / "deploy" / "systemd").glob("*.service"):
        text = unit.read_text()
        assert "EnvironmentFile=/etc/trading-pipeline/env" in text  # secrets never in the unit file
        assert "-h 0.0.0.0" not in text


@pytest.mark.postgres
def test_production_instance_runs_on_postgres(postgres_server_url: str, tmp_path, monkeypatch) -> None:
    base = make_url(postgres_server_url)
    name = f"tp_dagster_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        monkeypatch.setenv("DAGSTER_PG_HOST", base.host or "127.0.0.1")
        monkeypatch.setenv("DAGSTER_PG_USER", base.username or "postgres")
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", base.password or "")
        monkeypatch.setenv("DAGSTER_PG_DB", name)
        shutil.copyfile(ROOT / "deploy" / "dagster.postgres.yaml", tmp_path / "dagster.yaml")
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            limits = instance.get_settings("concurrency")["runs"]["tag_concurrency_limits"]
            assert limits[0]["limit"] == 1

            @dg.op
            def ping() -> int:
                return 1

            @dg.job
            def smoke() -> None:
                ping()

            assert smoke.execute_in_process(instance=instance).success
            assert len(instance.get_run_records()) == 1
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        os.environ.pop("DAGSTER_PG_DB", None)


# -- the production topology files (no Docker engine or Kubernetes here: checked statically, and the gRPC
# workspace against a real code server started locally) ------------------------------------------------------

DEPLOY = ROOT / "deploy"
MODULE = "trading_pipeline.definitions"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())


def _flag(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_compose_services_match_the_grpc_workspace_and_the_image() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "code-server", "webserver", "daemon", "watchdog"} <= set(services)
    workspace = yaml.safe_load((DEPLOY / "workspace.grpc.yaml").read_text())["load_from"][0]["grpc_server"]
    code_server = services["code-server"]["command"]
    # The webserver and daemon reach the code server by its service name and port, and load the same module
    # the repo's own workspace.yaml names.
    assert workspace["host"] == "code-server" and int(_flag(code_server, "-p")) == workspace["port"]
    repo_workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    assert _flag(code_server, "-m") == repo_workspace["module_name"] == MODULE
    assert workspace["location_name"] == repo_workspace["location_name"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY deploy/workspace.grpc.yaml /opt/dagster/workspace.yaml" in dockerfile
    assert "COPY deploy/dagster.postgres.yaml /opt/dagster/dagster_home/dagster.yaml" in dockerfile
    for name in ("webserver", "daemon"):
        assert _flag(services[name]["command"], "-w") == "/opt/dagster/workspace.yaml"
    assert "--workspace /opt/dagster/workspace.yaml" in " ".join(services["watchdog"]["command"])
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]  # never published beyond loopback
    for source in ("pyproject.toml", "README.md", "trading_pipeline", "deploy/workspace.grpc.yaml"):
        assert (ROOT / source).exists(), source  # every COPY source exists in the build context (the repo root)
    assert compose["x-app"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert "DAGSTER_PG_PASSWORD" not in dockerfile.split("No secret is baked in")[1].split("\n", 1)[1]


def test_helm_values_deploy_the_module_as_a_user_code_deployment() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert values["dagster-user-deployments"]["enabled"] is True
    assert deployment["dagsterApiGrpcArgs"] == ["-m", MODULE]
    assert deployment["image"]["repository"] and deployment["port"] == 4000
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert (
        limits == yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]["tag_concurrency_limits"]
    )
    assert "ALPACA_SECRET_KEY" not in {e["name"] for e in deployment.get("env", [])}  # secrets via envSecrets


@pytest.mark.slow
def test_grpc_workspace_loads_against_a_local_code_server(tmp_path) -> None:
    """`dagster definitions validate -w` the production workspace (host pointed at 127.0.0.1) against
    `dagster code-server start`, as the compose file runs it."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "TRADING_PIPELINE_DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    command = _compose()["services"]["code-server"]["command"]
    command = [str(bin_dir / command[0]), *command[1:]]
    command[command.index("-h") + 1] = "127.0.0.1"
    command[command.index("-p") + 1] = str(port)
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        workspace = yaml.safe_load((DEPLOY / "workspace.grpc.yaml").read_text())
        workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=port)
        (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
        deadline = time.monotonic() + 90
        while True:
            check = subprocess.run(
                [str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(port)], env=env, capture_output=True
            )
            if check.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        done = subprocess.run(
            [str(bin_dir / "dagster"), "definitions", "validate", "-w", str(tmp_path / "workspace.yaml")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "Validation successful for code location trading_pipeline" in done.stdout + done.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
