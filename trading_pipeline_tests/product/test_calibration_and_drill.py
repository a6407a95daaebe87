"""The calibration and the drill keep working: small runs that count what they claim (no timing assertions
beyond the drill's own pass/fail limits, which are what it is for)."""

from __future__ import annotations

import io
import json
import os

import pytest

from bench import calibration, drill


def test_calibration_at_small_size_separates_the_rules() -> None:
    out = io.StringIO()
    [result] = calibration.main(["--seeds", "7", "--days", "1", "--minutes", "70", "--symbols", "400"], out=out)
    assert result.runs == 35 and result.evaluations == 35
    assert result.outcome_false_failures == 0  # the product's rule on a healthy session
    assert result.fixed_false_failures > 0  # the 5:1 rule it replaced fails the same healthy hour
    assert result.outcome_detected_after_min is not None and result.outcome_detected_after_min <= 15
    assert result.fixed_detected_after_min is None or result.fixed_detected_after_min >= 60
    assert "| 7 | 35 |" in out.getvalue()


@pytest.mark.slow
@pytest.mark.postgres
def test_drill_one_mode_on_the_production_topology(postgres_server_url: str, tmp_path, monkeypatch) -> None:
    """The whole topology (daemon, webserver, gRPC code server, dagster-postgres, Postgres trading DB, sim
    broker, watchdog, webhook) for one cheap mode: a kill switch left on reaches the webhook as one alert."""
    monkeypatch.setattr(
        "bench.drill_topology.PG_SERVER", postgres_server_url.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    out = io.StringIO()
    prefix = f"tp_drill_test_{os.getpid()}"
    report = drill.main(
        ["--mode", "kill-switch-left-on", "--settle", "5", "--json", "--work", str(tmp_path), "--db-prefix", prefix],
        out=out,
    )
    [mode] = json.loads(out.getvalue())["modes"]
    assert mode["mode"] == "kill-switch-left-on"
    assert mode["alert_after_s"] is not None and mode["alert_after_s"] <= 180, report
    assert mode["alert_text"].startswith("[WARNING] kill switch ON: no new entries — kill switch ON since")
    assert "trading-pipeline resume" in mode["alert_text"]
