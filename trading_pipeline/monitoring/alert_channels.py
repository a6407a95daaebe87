"""Does an alert reach a person? The configured channels (names, never URLs) and each one's last delivery,
as health items for `preflight` (NO-GO), `status` and `watchdog`.

Silence is the failure this product exists to prevent: with no webhook, no Slack and no Apprise URL, alerts
reach only the log and the `alerts` table, which nobody reads at 3 a.m. That is a NO-GO unless it is
explicitly accepted (`TRADING_PIPELINE_ALERTS=log-only`, the demo and tests); so is a configured channel
whose last delivery failed (a webhook answering 404 to every alert is a channel that tells no one).
"""

from __future__ import annotations

import re

from trading_pipeline.monitoring.health import HealthItem
from trading_pipeline.resources.alert_channels import (
    APPRISE_URLS_ENV,
    SLACK_CHANNEL_ENV,
    SLACK_TOKEN_ENV,
    WEBHOOK_ENV,
    ChannelConfig,
)
from trading_pipeline.settings import AlertsPolicy, Settings
from trading_pipeline.store import alerts_repository as alerts_repo
from trading_pipeline.store.database import Database

CHANNELS_ALERT_KEY = "alert_channels"
HOW_TO_ADD_A_CHANNEL = (
    f"set {APPRISE_URLS_ENV} (e.g. ntfys://ntfy.sh/<topic>, tgram://<bot token>/<chat id>, "
    f"mailto://<user>:<password>@gmail.com), {WEBHOOK_ENV}, or {SLACK_TOKEN_ENV} + {SLACK_CHANNEL_ENV}; "
    "then `trading-pipeline alert-test`. Or set TRADING_PIPELINE_ALERTS=log-only to accept that no one is told"
)


def delivery_fix(channel: str, status: str) -> str:
    """What to do about a failed delivery, in the reader's words: which variable, and what to look at."""
    if channel == "webhook":
        if "HTTP 4" in status:
            return f"the receiver refused it: check the path and token in {WEBHOOK_ENV} against the receiver"
        if "HTTP 5" in status:
            return "the receiver failed while handling it: check the receiver's own log"
        return f"nothing answered in time: check the host and port in {WEBHOOK_ENV} and that the receiver is up"
    if channel == "slack":
        if "not installed" in status:
            return "pip install 'trading-pipeline[slack]'"
        return f"check {SLACK_TOKEN_ENV} (a bot token, xoxb-…) and that the bot is in {SLACK_CHANNEL_ENV}"
    scheme, _, nth = channel.removeprefix("apprise:").partition("#")
    which = f"the {_ordinal(int(nth))} {scheme}:// URL" if nth else f"the {scheme}:// URL"
    where = f"{which} in {APPRISE_URLS_ENV}"
    if "not a URL Apprise understands" in status or "not installed" in status:
        return f"correct {where}"
    if "onnection" in status or "imeout" in status or "timed out" in status:
        return f"nothing answered: check the host and port of {where} and that the service is reachable from here"
    if re.search(r"error=4\d\d|\b40[0-4]\b|nauthori[sz]ed|orbidden|ot found", status):
        return f"the service refused it: check the token, path or recipient of {where}"
    return f"check {where} (host, token, recipient) and that the service is reachable from this host"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def channel_items(settings: Settings, channels: ChannelConfig, db: Database | None) -> list[HealthItem]:
    """One item for the configuration (is any person reached?), then one per channel: its last delivery."""
    names = channels.names()
    problems = [
        *channels.half_configured(),
        *([settings.alerts_policy_problem] if settings.alerts_policy_problem else []),
    ]
    log_only = settings.alerts_policy is AlertsPolicy.LOG_ONLY
    if problems:
        summary = HealthItem("alert channels", False, "; ".join(problems), CHANNELS_ALERT_KEY, "fix the setting named")
    elif names:
        summary = HealthItem(
            "alert channels", True, f"{', '.join(names)} (and the log and the alerts table)", CHANNELS_ALERT_KEY
        )
    elif log_only:
        summary = HealthItem(
            "alert channels",
            True,
            "log and alerts table only — accepted by TRADING_PIPELINE_ALERTS=log-only; no person is told",
            CHANNELS_ALERT_KEY,
        )
    else:
        summary = HealthItem(
            "alert channels",
            False,
            f"no channel reaches a person: alerts go only to the log and the alerts table — {HOW_TO_ADD_A_CHANNEL}",
            CHANNELS_ALERT_KEY,
        )
    items = [summary]
    if not names:
        return items
    latest = _latest(db, names)
    for name in names:
        item_name, key = f"alerts via {name}", f"alert_channel:{name}"  # the key on OK items too: a recovery
        if isinstance(latest, str):
            items.append(HealthItem(item_name, True, f"last delivery unknown: {latest}", key))
            continue
        delivery = latest.get(name)
        if delivery is None:
            items.append(HealthItem(item_name, True, "no delivery yet (`trading-pipeline alert-test` sends one)", key))
        elif delivery.status == "ok":
            items.append(HealthItem(item_name, True, f"last delivery ok at {delivery.at:%Y-%m-%d %H:%M:%S} UTC", key))
        else:
            items.append(
                HealthItem(
                    item_name,
                    False,
                    f"last delivery {delivery.status} at {delivery.at:%Y-%m-%d %H:%M:%S} UTC (alert "
                    f"{delivery.alert_key}) — fix: {delivery_fix(name, delivery.status)}; then "
                    "`trading-pipeline alert-test`",
                    key,
                )
            )
    return items


def _latest(db: Database | None, names: list[str]) -> dict[str, alerts_repo.ChannelDelivery] | str:
    if db is None:
        return "trading DB unavailable"
    try:
        return alerts_repo.latest_deliveries(db, names)
    except Exception as exc:  # an unreadable alerts table is reported by the trading DB item; not a crash here
        return f"alerts table unreadable ({type(exc).__name__})"
