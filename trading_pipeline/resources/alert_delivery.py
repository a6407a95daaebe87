"""Alert delivery: always the log and the `alerts` table; optionally a JSON webhook, Slack and Apprise URLs.

A delivery channel failing (webhook down, Slack token wrong) is recorded on the alert and logged, but never
raised: the sensor or command that noticed the problem must keep running and keep noticing. Repeats within a
window are counted, not re-sent; when a condition clears, a "recovered" message follows.
The webhook URL, the Slack token and the Apprise URLs are secrets: they are never logged or stored; channels
are named by kind (`webhook`, `slack`, `apprise:tgram`) in deliveries, reports and reprs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from trading_pipeline.domain.jsonsafe import to_jsonable
from trading_pipeline.resources.alert_channels import ChannelConfig, register_secret_url
from trading_pipeline.resources.apprise_delivery import send_apprise
from trading_pipeline.store import alerts_repository as alerts_repo
from trading_pipeline.store.database import Database

log = logging.getLogger("trading_pipeline.alerts")

SEVERITIES = ("info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class AlertOutcome:
    key: str
    sent: bool  # False: a repeat within the de-duplication window (counted, not re-sent)
    deliveries: Mapping[str, str]
    occurrences: int


class AlertDispatcher:
    def __init__(
        self,
        db: Database | None,
        *,
        webhook_url: str | None = None,
        slack_token: str | None = None,
        slack_channel: str | None = None,
        apprise_urls: Sequence[str] = (),
        dedupe_window: timedelta = timedelta(minutes=30),
        webhook_timeout: float = 5.0,
        webhook_attempts: int = 3,
        logger: logging.Logger | Any | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = db
        self._webhook_url = webhook_url or None
        if self._webhook_url:
            register_secret_url(self._webhook_url)
        self._slack_token = slack_token or None
        self._slack_channel = slack_channel or None
        self._channels = ChannelConfig(self._webhook_url, self._slack_token, self._slack_channel, tuple(apprise_urls))
        self._apprise = self._channels.apprise_channels()
        for _, url in self._apprise:
            register_secret_url(url)
        self.dedupe_window = dedupe_window
        self.webhook_timeout = webhook_timeout
        self.webhook_attempts = max(1, webhook_attempts)
        self.logger = logger or log
        self.clock = clock
        self.sleep = sleep

    @classmethod
    def from_config(cls, db: Database | None, channels: ChannelConfig, **kwargs: Any) -> AlertDispatcher:
        return cls(
            db,
            webhook_url=channels.webhook_url,
            slack_token=channels.slack_token,
            slack_channel=channels.slack_channel,
            apprise_urls=channels.apprise_urls,
            **kwargs,
        )

    def __repr__(self) -> str:  # never show the webhook URL, the token or an Apprise URL
        return (
            f"AlertDispatcher(webhook={'set' if self._webhook_url else 'unset'}, "
            f"slack={'set' if self._slack_token else 'unset'}, apprise={len(self._apprise)} URL(s))"
        )

    @property
    def channel_names(self) -> list[str]:
        """The configured channels that reach a person, by name (never a URL)."""
        return self._channels.names()

    def send_test(self, title: str, message: str) -> dict[str, str]:
        """One test incident through every configured channel (not the log or the table): channel → outcome."""
        payload = {
            "key": "alert-test",
            "state": "test",
            "severity": "info",
            "title": title,
            "message": message,
            "source": "trading-pipeline alert-test",
            "details": {},
            "at": self.clock().isoformat(),
            "occurrences": 1,
        }
        return self._send_to_channels(payload, f"{title} — {message}")

    def fire(
        self,
        key: str,
        title: str,
        message: str,
        *,
        severity: str = "error",
        source: str = "pipeline",
        details: Mapping[str, Any] | None = None,
    ) -> AlertOutcome:
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        safe_details = to_jsonable(dict(details or {}))
        level = logging.ERROR if severity in ("error", "critical") else logging.WARNING
        payload = {
            "key": key,
            "state": "firing",
            "severity": severity,
            "title": title,
            "message": message,
            "source": source,
            "details": safe_details,
            "at": self.clock().isoformat(),
            "occurrences": 1,
        }
        if self.db is None:  # the trading DB itself is down: deliver without bookkeeping rather than not at all
            deliveries = self._deliver(payload, level=level)
            deliveries["table"] = "skipped: trading DB unavailable"
            return AlertOutcome(key, True, deliveries, 1)
        alert, due = alerts_repo.record_firing(
            self.db,
            key=key,
            severity=severity,
            title=title,
            message=message,
            details=safe_details,
            source=source,
            now=self.clock(),
            dedupe_window=self.dedupe_window,
        )
        if not due:
            self.logger.info(f"alert repeat (not re-sent, {alert.occurrences}×): {title}")
            return AlertOutcome(key, False, {}, alert.occurrences)
        payload["occurrences"] = alert.occurrences
        deliveries = self._deliver(payload, level=level)
        alerts_repo.record_deliveries(self.db, alert.id, deliveries)
        return AlertOutcome(key, True, deliveries, alert.occurrences)

    def resolve(self, key: str, message: str = "condition cleared") -> AlertOutcome | None:
        """Announce recovery of a firing alert; None when nothing was firing under that key."""
        if self.db is None:
            return None
        alert = alerts_repo.record_resolved(self.db, key, now=self.clock())
        if alert is None:
            return None
        payload = {
            "key": key,
            "state": "resolved",
            "severity": "info",
            "title": f"RECOVERED: {alert.title}",
            "message": message,
            "source": alert.source,
            "details": {},
            "at": self.clock().isoformat(),
            "occurrences": alert.occurrences,
        }
        deliveries = self._deliver(payload, level=logging.INFO)
        alerts_repo.record_deliveries(self.db, alert.id, {f"recovery_{k}": v for k, v in deliveries.items()})
        return AlertOutcome(key, True, deliveries, alert.occurrences)

    # -- channels ---------------------------------------------------------------------------------------
    def _deliver(self, payload: dict[str, Any], *, level: int) -> dict[str, str]:
        text = f"[{payload['severity'].upper()}] {payload['title']} — {payload['message']}"
        _log(self.logger, level, text)
        return {"log": "ok", "table": "ok", **self._send_to_channels(payload, text)}

    def _send_to_channels(self, payload: dict[str, Any], text: str) -> dict[str, str]:
        deliveries: dict[str, str] = {}
        if self._webhook_url:
            deliveries["webhook"] = self._post_webhook(payload)
        if self._channels.slack_configured:
            deliveries["slack"] = self._post_slack(text)
        for name, url in self._apprise:
            deliveries[name] = send_apprise(url, payload)
        for channel, status in deliveries.items():
            if status != "ok":
                _log(self.logger, logging.WARNING, f"alert delivery via {channel} {status}")
        return deliveries

    def _post_webhook(self, payload: dict[str, Any]) -> str:
        body = json.dumps(payload)
        problem = "not attempted"
        for attempt in range(self.webhook_attempts):
            try:
                response = requests.post(
                    self._webhook_url,
                    data=body,
                    timeout=self.webhook_timeout,
                    headers={"Content-Type": "application/json"},
                )
                if response.status_code < 300:
                    return "ok"
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # a 4xx will not get better by retrying
            except requests.RequestException as exc:
                problem = type(exc).__name__  # not str(exc): it contains the URL, a secret
            if attempt + 1 < self.webhook_attempts:
                self.sleep(min(4.0, 0.5 * 2**attempt))
        return f"failed: {problem} after {attempt + 1} attempt(s)"

    def _post_slack(self, text: str) -> str:
        try:
            from dagster_slack import SlackResource
        except ImportError:
            return "failed: dagster-slack is not installed (pip install 'trading-pipeline[slack]')"
        try:
            SlackResource(token=self._slack_token).get_client().chat_postMessage(channel=self._slack_channel, text=text)
            return "ok"
        except Exception as exc:  # Slack errors must not stop the sensor
            return f"failed: {type(exc).__name__}"


def _log(logger: Any, level: int, text: str) -> None:
    method = {logging.ERROR: "error", logging.WARNING: "warning"}.get(level, "info")
    getattr(logger, method)(text)
