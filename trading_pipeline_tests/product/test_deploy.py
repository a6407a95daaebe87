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
