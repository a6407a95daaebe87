"""Where alerts reach a person: the configured channels (JSON webhook, Slack, each Apprise URL), named by kind,
never by URL, and the redaction that keeps their secrets out of every log record.

An Apprise URL carries its service's secret in itself (a bot token, a password, a topic), so the URLs are
handled like the webhook URL: read from the environment (Dagster `EnvVar`), never logged, stored or shown.
Each URL is its own channel, named `apprise:<scheme>` (`apprise:tgram`, `apprise:ntfys`, `apprise:json#2` for
a second one of a kind), so a failing one is recorded as that channel's failure while the others deliver.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

WEBHOOK_ENV = "TRADING_PIPELINE_ALERT_WEBHOOK_URL"
SLACK_TOKEN_ENV = "TRADING_PIPELINE_SLACK_TOKEN"
SLACK_CHANNEL_ENV = "TRADING_PIPELINE_SLACK_CHANNEL"
APPRISE_URLS_ENV = "TRADING_PIPELINE_APPRISE_URLS"

# Channels that never reach a person by themselves (always on): judged as configured by nothing.
ALWAYS_ON = ("log", "table")

# Apprise's own rule: a comma or whitespace separates URLs only where the next one starts (`scheme://`);
# a comma inside one (e-mail recipients `?to=a@x,b@x`) stays part of it.
_URL_BOUNDARY = re.compile(r"[\s,]+(?=[A-Za-z][A-Za-z0-9+.-]*://)")


class _RedactSecrets(logging.Filter):
    """Third-party libraries log what they send: urllib3 each request line at DEBUG ("POST /hooks/<token>
    HTTP/1.1"), Apprise the URLs it loads or cannot parse. This filter rewrites such records before any
    handler sees them."""

    def __init__(self) -> None:
        super().__init__("redact-alert-secrets")
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "<redacted>")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                record.msg, record.args = self.redact(message), None
        return True


REDACTOR = _RedactSecrets()
for _name in ("urllib3.connectionpool", "apprise"):
    logging.getLogger(_name).addFilter(REDACTOR)


def register_secret_url(url: str) -> None:
    """The URL, its path and query (a webhook's token), and for an Apprise URL every part long enough to be a
    secret (tgram://<bot token>/<chat>: the token becomes part of the API path Apprise logs)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    pieces = {url, path if len(path) > 1 else ""}
    if not parts.scheme.startswith("http"):
        pieces |= {parts.netloc, parts.username or "", parts.password or "", *parts.path.split("/")}
        pieces |= {unquote(value) for _, value in parse_qsl(parts.query)}
        pieces = {p for p in pieces if len(p) >= 6} | {url}
    REDACTOR.secrets.update(p for p in pieces if p)


def split_apprise_urls(text: str | None) -> list[str]:
    """TRADING_PIPELINE_APPRISE_URLS as a list: comma- or space-separated URLs."""
    return [u.strip().strip(",").strip() for u in _URL_BOUNDARY.split((text or "").strip()) if u.strip(" ,\n\t")]


def apprise_scheme(url: str) -> str:
    scheme = url.split("://", 1)[0].strip().lower() if "://" in url else ""
    return scheme if re.fullmatch(r"[a-z][a-z0-9+.-]{0,30}", scheme) else "unknown"


def apprise_channel_names(urls: Sequence[str]) -> list[str]:
    """`apprise:<scheme>` per URL; a second URL of the same scheme is `apprise:<scheme>#2`, and so on."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for url in urls:
        scheme = apprise_scheme(url)
        seen[scheme] = seen.get(scheme, 0) + 1
        names.append(f"apprise:{scheme}" + (f"#{seen[scheme]}" if seen[scheme] > 1 else ""))
    return names


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """The channels alerts are delivered to beside the log and the `alerts` table. The secrets are not in
    the repr."""

    webhook_url: str | None = field(default=None, repr=False)
    slack_token: str | None = field(default=None, repr=False)
    slack_channel: str | None = None
    apprise_urls: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ChannelConfig:
        return cls(
            webhook_url=env.get(WEBHOOK_ENV, "").strip() or None,
            slack_token=env.get(SLACK_TOKEN_ENV, "").strip() or None,
            slack_channel=env.get(SLACK_CHANNEL_ENV, "").strip() or None,
            apprise_urls=tuple(split_apprise_urls(env.get(APPRISE_URLS_ENV))),
        )

    @property
    def slack_configured(self) -> bool:
        return bool(self.slack_token and self.slack_channel)

    def apprise_channels(self) -> list[tuple[str, str]]:
        """(channel name, URL) per Apprise URL."""
        return list(zip(apprise_channel_names(self.apprise_urls), self.apprise_urls, strict=True))

    def names(self) -> list[str]:
        """The channels that reach a person, by name (never a URL)."""
        names = ["webhook"] if self.webhook_url else []
        names += ["slack"] if self.slack_configured else []
        return names + apprise_channel_names(self.apprise_urls)

    def half_configured(self) -> list[str]:
        """Settings that look like a channel but deliver nowhere, each with what to set."""
        if self.slack_token and not self.slack_channel:
            return [f"{SLACK_TOKEN_ENV} is set but {SLACK_CHANNEL_ENV} is not: Slack gets nothing until both are"]
        if self.slack_channel and not self.slack_token:
            return [f"{SLACK_CHANNEL_ENV} is set but {SLACK_TOKEN_ENV} is not: Slack gets nothing until both are"]
        return []
