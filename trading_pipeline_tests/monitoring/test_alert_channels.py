"""A channel that reaches a person, or NO-GO: pre-flight without a channel (unless log-only is accepted), a
channel whose latest delivery failed, `status`/`watchdog` naming the channels (never their URLs) with each
one's last delivery, and `trading-pipeline alert-test` against receivers on 127.0.0.1."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from trading_pipeline.cli.main import main
from trading_pipeline.monitoring.alert_channels import channel_items
from trading_pipeline.resources.alert_channels import ChannelConfig
from trading_pipeline.resources.alert_delivery import AlertDispatcher
from trading_pipeline.settings import Settings
from trading_pipeline.store.alerts_repository import latest_deliveries
from trading_pipeline.store.database import Database
from trading_pipeline.store.migrate import upgrade
from trading_pipeline_tests.automation_fixtures import project_instance
from trading_pipeline_tests.receivers import closed_port, receiving

SECRET = "s3cret-T0KEN-of-the-hook"


def items(env: dict[str, str], db: Database | None = None) -> dict[str, object]:
    found = channel_items(Settings.from_env(env), ChannelConfig.from_env(env), db)
    return {item.name: item for item in found}


def test_no_channel_is_a_no_go_that_says_what_to_set() -> None:
    item = items({})["alert channels"]
    assert not item.ok
    assert "no channel reaches a person" in item.detail
    assert all(name in item.detail for name in ("TRADING_PIPELINE_APPRISE_URLS", "TRADING_PIPELINE_ALERT_WEBHOOK_URL"))
    assert "TRADING_PIPELINE_ALERTS=log-only" in item.detail


def test_log_only_is_go_when_said_explicitly_and_a_typo_is_not() -> None:
    accepted = items({"TRADING_PIPELINE_ALERTS": "log-only"})["alert channels"]
    assert accepted.ok and "accepted by TRADING_PIPELINE_ALERTS=log-only" in accepted.detail
    typo = items({"TRADING_PIPELINE_ALERTS": "log_only"})["alert channels"]  # loads; judged here
    assert not typo.ok and "TRADING_PIPELINE_ALERTS must be one of channels, log-only; got 'log_only'" in typo.detail


def test_a_configured_channel_is_go_by_name_and_half_a_slack_is_not() -> None:
    configured = items({"TRADING_PIPELINE_APPRISE_URLS": f"ntfys://ntfy.sh/{SECRET}"})
    assert configured["alert channels"].ok and configured["alert channels"].detail.startswith("apprise:ntfys")
    assert SECRET not in repr(configured)
    half = items({"TRADING_PIPELINE_SLACK_TOKEN": f"xoxb-{SECRET}"})["alert channels"]
    assert not half.ok and "TRADING_PIPELINE_SLACK_CHANNEL is not" in half.detail


def test_a_channel_whose_last_delivery_failed_is_a_no_go_until_one_succeeds(db: Database) -> None:
    with receiving(404) as hook:
        env = {"TRADING_PIPELINE_ALERT_WEBHOOK_URL": f"{hook.url}/hooks/{SECRET}"}
        dispatcher = AlertDispatcher.from_config(db, ChannelConfig.from_env(env), sleep=lambda s: None)
        assert items(env, db)["alerts via webhook"].ok  # nothing sent yet: not judged
        dispatcher.fire("positions:unconfirmed", "AAPL unconfirmed", "held 10, listed 0")
        failing = items(env, db)["alerts via webhook"]
        assert not failing.ok and "last delivery failed: HTTP 404" in failing.detail
        assert "(alert positions:unconfirmed)" in failing.detail and "fix: the receiver refused it" in failing.detail
        hook.status = 200
        dispatcher.resolve("positions:unconfirmed", "explained by a fill")  # the recovery reaches it: latest is ok
        assert items(env, db)["alerts via webhook"].ok
        hook.status = 404
        dispatcher.fire("closes:refused:TSLA", "TSLA exit refused", "PDT protection")  # a newer failure wins
        assert not items(env, db)["alerts via webhook"].ok
    assert SECRET not in repr(latest_deliveries(db, ["webhook"]))


def test_a_re_sent_old_alert_counts_by_when_it_was_sent(db: Database) -> None:
    """The latest delivery is judged by when it happened, not by which alert row is newest."""
    with receiving(200) as hook:
        env = {"TRADING_PIPELINE_ALERT_WEBHOOK_URL": f"{hook.url}/x"}
        times = iter(
            [
                datetime(2026, 11, 24, h, m, tzinfo=UTC)
                for h, m in ((10, 0), (10, 0), (10, 5), (10, 5), (11, 0), (11, 0))
            ]
        )
        dispatcher = AlertDispatcher.from_config(db, ChannelConfig.from_env(env), clock=lambda: next(times))
        dispatcher.fire("old", "old incident", "first")  # 10:00 ok
        dispatcher.fire("new", "new incident", "second")  # 10:05 ok
        hook.status = 404
        dispatcher.fire("old", "old incident", "re-sent after the window")  # 11:00 on the OLDER row: failed
    assert latest_deliveries(db, ["webhook"])["webhook"].status.startswith("failed: HTTP 404")


def run_cli(monkeypatch, capsys, env: dict[str, str], *argv: str) -> tuple[int, str]:
    for name in ("DAGSTER_HOME", "TRADING_PIPELINE_ALERTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out + captured.err


@pytest.fixture
def migrated(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'trading.db'}"
    with Database(url) as db:
        upgrade(db)
    return url


def test_alert_test_delivers_to_every_channel_and_exits_0(monkeypatch, capsys, migrated: str) -> None:
    with receiving(200) as hook, receiving(200) as apprise_receiver:
        env = {
            "DATABASE_URL": migrated,
            "TRADING_PIPELINE_ALERT_WEBHOOK_URL": f"{hook.url}/hooks/{SECRET}",
            "TRADING_PIPELINE_APPRISE_URLS": f"json://127.0.0.1:{apprise_receiver.port}/{SECRET}",
        }
        code, out = run_cli(monkeypatch, capsys, env, "alert-test")
    assert code == 0, out
    assert out.splitlines()[0] == "alert-test: 2 of 2 channel(s) delivered"
    assert "  webhook       delivered" in out and "  apprise:json  delivered" in out
    test_title = "TEST — trading-pipeline alert-test, not a real incident"
    assert hook.bodies()[0]["title"] == test_title and "Nothing is wrong" in hook.bodies()[0]["message"]
    assert apprise_receiver.bodies()[0]["title"] == f"[INFO] {test_title}"
    assert SECRET not in out
    with Database(migrated) as db:
        assert {c: d.status for c, d in latest_deliveries(db, ["webhook", "apprise:json"]).items()} == {
            "webhook": "ok",
            "apprise:json": "ok",
        }


def test_alert_test_names_each_failure_and_its_fix_and_exits_1(monkeypatch, capsys, migrated: str) -> None:
    with receiving(404) as hook, receiving(200) as good:
        env = {
            "DATABASE_URL": migrated,
            "TRADING_PIPELINE_ALERT_WEBHOOK_URL": f"{hook.url}/hooks/{SECRET}",
            "TRADING_PIPELINE_APPRISE_URLS": (
                f"json://127.0.0.1:{good.port}/{SECRET} json://127.0.0.1:{closed_port()}/{SECRET}"
            ),
        }
        code, out = run_cli(monkeypatch, capsys, env, "alert-test")
    assert code == 1, out
    lines = out.splitlines()
    assert lines[0] == "alert-test: 1 of 3 channel(s) delivered"
    webhook = next(line for line in lines if line.strip().startswith("webhook"))
    assert "FAILED HTTP 404" in webhook and "fix: the receiver refused it" in webhook
    closed = next(line for line in lines if line.strip().startswith("apprise:json#2"))
    assert "FAILED" in closed and "fix: nothing answered: check the host and port of the 2nd json:// URL" in closed
    assert re.search(r"apprise:json +delivered", out) and SECRET not in out
    # Recorded: pre-flight now says the webhook failed its last delivery.
    with Database(migrated) as db:
        judged = items(env, db)
    assert not judged["alerts via webhook"].ok and "(alert alert-test)" in judged["alerts via webhook"].detail


def test_alert_test_without_a_channel_exits_non_zero_saying_what_to_set(monkeypatch, capsys, migrated: str) -> None:
    code, out = run_cli(monkeypatch, capsys, {"DATABASE_URL": migrated}, "alert-test")
    assert code == 1
    assert "no channel is configured, so no alert reaches a person" in out
    assert "TRADING_PIPELINE_APPRISE_URLS" in out


def test_preflight_status_and_watchdog_name_the_channels_not_their_urls(monkeypatch, capsys, migrated: str) -> None:
    with receiving(404) as hook:
        env = {
            "DATABASE_URL": migrated,
            "TRADING_PIPELINE_ALERT_WEBHOOK_URL": f"{hook.url}/hooks/{SECRET}",
            "TRADING_PIPELINE_APPRISE_URLS": f"json://127.0.0.1:{closed_port()}/{SECRET}",
        }
        assert run_cli(monkeypatch, capsys, env, "alert-test")[0] == 1
        code, status = run_cli(monkeypatch, capsys, env, "status")
        _, watchdog = run_cli(monkeypatch, capsys, env, "watchdog")
    assert code == 1 and "BAD  alerts via webhook" in status and "BAD  alerts via apprise:json" in status
    assert "OK   alert channels" in status and "webhook, apprise:json" in status
    assert "BAD  alerts via webhook" in watchdog and "last delivery failed: HTTP 404" in watchdog
    assert SECRET not in status + watchdog


def test_preflight_cli_without_a_channel_is_no_go(monkeypatch, capsys, migrated: str) -> None:
    env = {"DATABASE_URL": migrated, "ALPACA_TRADING_URL": f"http://127.0.0.1:{closed_port()}"}
    code, out = run_cli(monkeypatch, capsys, env, "preflight")
    assert code == 1
    line = next(line for line in out.splitlines() if "alert channels" in line)
    assert line.lstrip().startswith("NO-GO") and "TRADING_PIPELINE_APPRISE_URLS" in line
    monkeypatch.setenv("TRADING_PIPELINE_ALERTS", "log-only")
    assert main(["preflight"]) == 1  # still NO-GO (no broker here), but not for the channels
    line = next(line for line in capsys.readouterr().out.splitlines() if "alert channels" in line)
    assert line.lstrip().startswith("GO") and "log-only" in line


def test_the_demo_env_file_accepts_log_only_explicitly(tmp_path) -> None:
    """`trading-pipeline ui` after the demo loads this .env: its pre-flight is honest — no person is told,
    accepted by name — instead of a NO-GO a demo user cannot act on, or a silent GO."""
    from trading_pipeline.harness.demo_setup import write_ui_env

    env_file = tmp_path / ".env"
    write_ui_env(env_file, home=tmp_path / "home", database_url="sqlite:///x.db")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#")
    assert env["TRADING_PIPELINE_ALERTS"] == "log-only"
    item = items(env)["alert channels"]
    assert item.ok and "no person is told" in item.detail


def test_preflight_judges_the_channels_the_alerts_resource_delivers_to() -> None:
    """The `preflight` asset passes its `alerts` resource's channels; the command reads the environment."""
    from trading_pipeline.automation.registry import AUTOMATION
    from trading_pipeline.broker.base import ConfigurationError
    from trading_pipeline.monitoring.preflight import run_preflight

    def no_broker():  # type: ignore[no-untyped-def]
        raise ConfigurationError("no broker in this test")

    def judged(environ: dict[str, str], channels: ChannelConfig | None) -> object:
        report = run_preflight(
            now=datetime(2026, 11, 24, 13, 55, tzinfo=UTC),
            settings=Settings.from_env(environ),
            instance=None,
            db=None,
            environ=environ,
            broker_factory=no_broker,
            automation=AUTOMATION,
            alert_channels=channels,
        )
        return next(item for item in report.items if item.name == "alert channels")

    resource_channels = ChannelConfig(apprise_urls=(f"ntfys://ntfy.sh/{SECRET}",))
    assert judged({}, resource_channels).ok
    assert not judged({}, None).ok
    assert judged({"TRADING_PIPELINE_APPRISE_URLS": f"ntfys://ntfy.sh/{SECRET}"}, None).ok


def test_the_health_asset_reports_the_channels_of_its_alerts_resource(migrated: str, tmp_path) -> None:
    """The `health` asset is the status report with history: the channels by name and their last delivery."""
    import dagster as dg

    from trading_pipeline.assets.health import build_health_asset
    from trading_pipeline.automation.registry import AUTOMATION
    from trading_pipeline.resources.alerts import AlertsResource
    from trading_pipeline.resources.database import TradingDatabase

    with receiving(404) as hook:
        url = f"{hook.url}/hooks/{SECRET}"
        with Database(migrated) as db:
            AlertDispatcher(db, webhook_url=url, sleep=lambda s: None).fire("k", "an incident", "its message")
        with project_instance(tmp_path / "home") as instance:
            result = dg.materialize(
                [build_health_asset(AUTOMATION)],
                instance=instance,
                resources={"database": TradingDatabase(url=migrated), "alerts": AlertsResource(webhook_url=url)},
            )
    report = result.asset_materializations_for_node("health")[0].metadata["report"].value
    assert "BAD  alerts via webhook" in report and "last delivery failed: HTTP 404" in report
    assert SECRET not in report
