"""Apprise channels beside the webhook: one incident format for every channel, each URL its own channel, a
failing one recorded as that channel's failure and never raised."""

from __future__ import annotations

import dagster as dg

from trading_pipeline.definitions import build_resources
from trading_pipeline.resources.alert_channels import ChannelConfig, split_apprise_urls
from trading_pipeline.resources.alert_delivery import AlertDispatcher
from trading_pipeline.settings import Settings
from trading_pipeline.store.alerts_repository import recent_alerts
from trading_pipeline.store.database import Database
from trading_pipeline_tests.receivers import closed_port, receiving


def test_urls_split_on_commas_and_spaces_but_not_inside_one() -> None:
    text = "tgram://123456:ABC/987, ntfys://ntfy.sh/topic  mailto://u:p@gmail.com?to=a@x.com,b@x.com\njson://h/"
    assert split_apprise_urls(text) == [
        "tgram://123456:ABC/987",
        "ntfys://ntfy.sh/topic",
        "mailto://u:p@gmail.com?to=a@x.com,b@x.com",
        "json://h/",
    ]
    assert split_apprise_urls("  ") == [] and split_apprise_urls(None) == []
    names = ChannelConfig(webhook_url="http://h/x", apprise_urls=("json://a/", "tgram://t/c", "json://b/")).names()
    assert names == ["webhook", "apprise:json", "apprise:tgram", "apprise:json#2"]


def test_each_apprise_url_is_a_channel_with_its_own_outcome_and_the_incident_format(db: Database) -> None:
    with receiving(200) as good, receiving(404) as refusing, receiving(200) as hook:
        dispatcher = AlertDispatcher(
            db,
            webhook_url=f"{hook.url}/hook",
            apprise_urls=[
                f"json://127.0.0.1:{good.port}/alerts",
                f"json://127.0.0.1:{refusing.port}/alerts",
                f"json://127.0.0.1:{closed_port()}/alerts",
                "bogus://not-a-service",
            ],
            sleep=lambda seconds: None,
        )
        outcome = dispatcher.fire(
            "tick:sensor:stop_trigger_sensor",
            "sensor stop_trigger_sensor unhealthy",
            "failed every tick since 10:57:30 ET; last error: no such table: trades. What to do: run db upgrade",
            severity="critical",
            source="automation_health_sensor",
        )
        recovered = dispatcher.resolve("tick:sensor:stop_trigger_sensor", "ticks succeed again")
    assert outcome.deliveries["webhook"] == "ok" and outcome.deliveries["apprise:json"] == "ok"
    assert outcome.deliveries["apprise:json#2"].startswith("failed:") and "404" in outcome.deliveries["apprise:json#2"]
    assert (
        outcome.deliveries["apprise:json#3"].startswith("failed:")
        and "onnection" in outcome.deliveries["apprise:json#3"]
    )
    assert outcome.deliveries["apprise:bogus"].startswith("failed: not a URL Apprise understands (scheme 'bogus')")
    # The same incident the webhook carries as JSON: what, since when, the last error, what to do; its key.
    firing, recovery = good.bodies()
    assert firing["title"] == "[CRITICAL] sensor stop_trigger_sensor unhealthy" and firing["type"] == "failure"
    assert "since 10:57:30 ET; last error: no such table: trades. What to do: run db upgrade" in firing["message"]
    assert "incident tick:sensor:stop_trigger_sensor · firing · from automation_health_sensor" in firing["message"]
    assert recovery["title"] == "[INFO] RECOVERED: sensor stop_trigger_sensor unhealthy"
    assert recovery["type"] == "success" and "ticks succeed again" in recovery["message"]
    assert hook.bodies()[0]["message"] == firing["message"].split("\n\n")[0]
    # Recorded per channel on the alert, recovery too.
    stored = recent_alerts(db, limit=1)[0].deliveries
    assert stored["apprise:json"] == "ok" and stored["recovery_apprise:json"] == "ok"
    assert stored["apprise:json#2"].startswith("failed:") and recovered is not None


def test_the_resource_takes_the_urls_from_the_environment(monkeypatch) -> None:
    with receiving(200) as good:
        url = f"json://127.0.0.1:{good.port}/alerts"
        monkeypatch.setenv("TRADING_PIPELINE_APPRISE_URLS", f"{url}, json://127.0.0.1:{good.port}/second")
        resources = build_resources(Settings.from_env())
        assert isinstance(resources["alerts"].apprise_urls, dg.EnvVar)  # shown in the UI by name only
        with dg.build_resources({"alerts": resources["alerts"]}) as live:
            assert live.alerts.channels().names() == ["apprise:json", "apprise:json#2"]
            assert live.alerts.dispatcher(None).send_test("t", "m") == {"apprise:json": "ok", "apprise:json#2": "ok"}
    assert [line.split()[1] for line, _ in good.requests] == ["/alerts", "/second"]
